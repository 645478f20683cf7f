use super::*;
use crate::model::{Mode, SecretData};

pub(crate) const PRODUCTION: &str = include_str!("../../../examples/production.toml");
const LOCAL: &str = include_str!("../../../examples/local.toml");

pub(crate) fn inputs() -> Inputs {
    Inputs {
        oauth_client_secret: Some(b"s3cret-from-the-file".to_vec()),
        ..Default::default()
    }
}

pub(crate) fn production() -> Desired {
    desired(&DeployFile::parse(PRODUCTION).unwrap(), &inputs()).unwrap()
}

fn service<'a>(d: &'a Desired, name: &str) -> &'a ServiceWant {
    d.services.iter().find(|s| s.name == name).unwrap()
}

fn config_text(d: &Desired) -> String {
    let SecretData::Bytes(b) = &d.configs[0].data else {
        panic!("config without bytes")
    };
    String::from_utf8(b.clone()).unwrap()
}

#[test]
fn the_production_example_wants_every_object() {
    let d = production();
    assert_eq!(d.network.name, "jhub");
    assert!(d.configs[0].name.starts_with("jhub-hub-config-"));
    let secrets: Vec<&str> = d.secrets.iter().map(|s| s.role.as_str()).collect();
    assert_eq!(
        secrets,
        [
            "proxy-token",
            "oauth-client-secret",
            "hub-cookie-secret",
            "hub-crypt-key"
        ]
    );
    assert_eq!(d.secrets[0].data, SecretData::Generated);

    let hub = service(&d, "jhub-hub");
    assert_eq!(hub.constraints, ["node.role==manager"]);
    assert_eq!(hub.mode, Mode::Global);
    assert!(hub.start_first && hub.spec_hash);
    assert_eq!(
        hub.command[..2],
        ["python3", "/srv/jupyterhub/hubgate/hubgate_lease.py"]
    );
    assert_eq!(hub.labels["hubgate.health.path"], "/hub/health");
    assert!(hub.dnsrr);
    assert_eq!(hub.resources.cpu_limit, Some(2_000_000_000));
    assert_eq!(hub.resources.memory_reservation, Some(512 << 20));
    let storage = &hub.mounts[1];
    assert_eq!(storage.driver_opts["type"], "nfs");
    assert_eq!(
        storage.driver_opts["o"],
        "addr=10.0.0.10,rw,nfsvers=4.1,hard,noatime"
    );
    assert_eq!(storage.driver_opts["device"], ":/srv/jupyterhub");
    assert_eq!(hub.labels["hubgate.path"], "/");
    // The hub holds no engine socket: docker-py and the lease's engine
    // check go through the guard's spawner socket; a standby must reach
    // hubgate's API to take the lease.
    let guarded = "/run/hubgate-guard/spawner/docker.sock";
    assert_eq!(hub.env["DOCKER_HOST"], format!("unix://{guarded}"));
    assert!(
        hub.mounts
            .iter()
            .all(|m| m.source != "/var/run/docker.sock")
    );
    assert!(hub.mounts[0].source == "jhub-guard-spawner" && hub.mounts[0].read_only);
    let flag = |name: &str| {
        let at = hub.command.iter().position(|a| a == name).unwrap();
        hub.command[at + 1].clone()
    };
    assert_eq!(flag("--docker-socket"), guarded);
    assert_eq!(flag("--peers"), "jhub-hubgate:8001");

    let proxy = service(&d, "jhub-hubgate");
    assert_eq!(proxy.mode, Mode::Global);
    assert_eq!(proxy.ports, [(80, 80), (443, 443)]);
    // hubgate is in no group of the engine's socket: it reaches the
    // engine only through the guard's discovery socket.
    assert_eq!(proxy.user, "10001:10001");
    assert_eq!(
        proxy.env["DOCKER_HOST"],
        "unix:///run/hubgate-guard/discovery/docker.sock"
    );
    assert!(
        proxy
            .args
            .contains(&"--acme-domain=hub.example.org".to_owned())
    );
    assert!(
        proxy
            .args
            .contains(&"--max-body-size=1073741824".to_owned())
    );
    let guarded = &proxy.mounts[0];
    assert!(!guarded.bind && guarded.source == "jhub-guard-discovery" && guarded.read_only);
    assert!(
        proxy
            .mounts
            .iter()
            .all(|m| m.source != "/var/run/docker.sock"),
        "hubgate mounts the engine's socket"
    );
    let guard = service(&d, "jhub-docker-guard");
    assert_eq!(guard.mode, Mode::Global);
    assert_eq!(guard.user, "0:0");
    assert!(guard.networks.is_empty() && guard.ports.is_empty());
    assert_eq!(guard.mounts[0].source, "/var/run/docker.sock");
    assert_eq!(guard.mounts[1].source, "jhub-guard-discovery");
    assert_eq!(guard.mounts[2].source, "jhub-guard-spawner");
    assert!(guard.start_first);
    let config = d
        .configs
        .iter()
        .find(|c| c.role == Role::GuardConfig)
        .unwrap();
    let SecretData::Bytes(text) = &config.data else {
        panic!("a guard config without bytes")
    };
    let text = String::from_utf8_lossy(text);
    assert!(
        text.contains(r#""kind":"discovery","service":"jhub-hubgate""#),
        "{text}"
    );
    // The spawner policy, from the file: its image, network and storage.
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let spawner = &config["sockets"][1]["policy"];
    assert_eq!(spawner["kind"], "spawner");
    assert_eq!(spawner["network"], "jhub");
    assert_eq!(spawner["secret_prefix"], "jhub-token-");
    assert_eq!(
        spawner["volume"]["options"]["device"],
        ":/srv/jupyterhub/{username}"
    );
    // One server rule a profile: the first with [singleuser]'s image and
    // limits, the GPU one with its own, its placement and its GPU.
    let servers = spawner["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["limits"]["memory_limit"], 4u64 << 30);
    assert_eq!(
        servers[0]["image"],
        "registry.example.org/jupyterhub-singleuser:6.1.1"
    );
    assert_eq!(servers[1]["limits"]["memory_limit"], 32u64 << 30);
    assert_eq!(servers[1]["limits"]["cpu_limit"], 8_000_000_000u64);
    assert_eq!(
        servers[1]["constraints"],
        serde_json::json!(["node.role==worker", "node.labels.gpu==true"])
    );
    assert_eq!(servers[1]["generic"]["NVIDIA-GPU"], 1);
    // The shared data: both profiles mount the storage's datasets
    // (read-only) and group space; the GPU one its own NFS export too.
    let mounts = |i: usize| servers[i]["mounts"].as_array().unwrap().clone();
    assert_eq!(mounts(0).len(), 2);
    assert_eq!(mounts(1).len(), 3);
    assert_eq!(mounts(0)[0]["target"], "/home/jovyan/datasets");
    assert_eq!(mounts(0)[0]["read_only"], true);
    assert_eq!(mounts(0)[1]["read_only"], false);
    assert_eq!(
        mounts(0)[0]["options"]["device"],
        ":/srv/jupyterhub/datasets"
    );
    assert_eq!(
        mounts(1)[2]["options"]["o"],
        "addr=10.0.0.11,rw,nfsvers=4.1,hard,noatime"
    );
    assert_eq!(mounts(1)[2]["labels"]["hubgate.deploy.role"], "data");
    // Every node keeps them.
    for m in mounts(1) {
        assert!(
            d.keep
                .names
                .contains(&m["source"].as_str().unwrap().to_owned())
        );
    }
    // The policy the guard reads is the one it parses.
    let parsed: hubgate_guard::Policy = serde_json::from_value(spawner.clone()).unwrap();
    assert_eq!(parsed.name(), "spawner");
    assert_eq!(
        proxy.mounts[1].driver_opts["device"],
        ":/srv/jupyterhub/.hubgate/certs"
    );
    assert_eq!(d.user_volume_opts["device"], ":/srv/jupyterhub/{username}");
}

#[test]
fn the_hub_config_points_at_hubgate_and_keeps_secrets_out() {
    let d = production();
    let py = config_text(&d);
    for wanted in [
        "import hubgate_hub",
        "hubgate_hub.configure(c, {",
        "\"connect_ip\": \"jhub-hub\",",
        "\"host\": \"jhub-hubgate\",",
        "\"port\": 8001,",
        "\"token_path\": \"/run/secrets/proxy-token\",",
        "\"client_id\": \"Iv1.0123456789abcdef\",",
        "\"client_secret_path\": \"/run/secrets/oauth-client-secret\",",
        "\"callback_url\": \"https://hub.example.org/hub/oauth_callback\",",
        "\"network\": \"jhub\",",
        "\"memory_limit\": 4294967296,",
        "\"idle_timeout\": 7200,",
        "\"every\": 600,",
        "\"max_age\": 86400,",
        "\"concurrent_spawns\": 20,",
        "\"active_servers\": 400,",
        "\"named_servers\": 3,",
        "\"announcement\": \"Maintenance on Friday 18:00-20:00: save your work.\",",
        "\"display_name\": \"Python with a GPU\",",
        "\"NVIDIA-GPU\": 1,",
        "\"allowed_groups\": [\"gpu-users\"],",
        "\"device\": \":/srv/jupyterhub/{username}\",",
        "\"constraints\": [\"node.role==worker\"],",
        "\"hubgate.deploy.spawned\": \"jhub\",",
        "\"password_path\": None,",
    ] {
        assert!(py.contains(wanted), "missing {wanted:?} in\n{py}");
    }
    let everything = format!("{py}{:?}", d.services);
    assert!(!everything.contains("s3cret"), "the client secret leaked");
}

#[test]
fn the_local_example_makes_its_directories_and_lets_anyone_in() {
    let f = DeployFile::parse(LOCAL).unwrap();
    let d = desired(&f, &inputs()).unwrap();
    assert_eq!(
        d.local_dirs,
        [LocalDir {
            path: "/var/lib/hubgate-trial/users".into(),
            uid: 0
        }]
    );
    assert_eq!(
        d.user_volume_opts["device"],
        "/var/lib/hubgate-trial/users/{username}"
    );
    assert_eq!(d.user_volume_opts["o"], "bind");
    let py = config_text(&d);
    assert!(py.contains("\"kind\": \"dummy\","), "{py}");
    assert!(py.contains("\"allow_all\": True,"), "{py}");
    assert!(
        py.contains("\"public_url\": \"http://localhost:8000/\","),
        "{py}"
    );
    assert_eq!(service(&d, "trial-hubgate").ports, [(8000, 80)]);
}

#[test]
fn a_named_file_must_be_passed_in() {
    let f = DeployFile::parse(PRODUCTION).unwrap();
    let err = desired(&f, &Inputs::default()).unwrap_err();
    assert!(err.to_string().contains("auth.client_secret_file"), "{err}");
}

#[test]
fn immutable_objects_are_named_by_their_content() {
    let a = production();
    let edited = PRODUCTION.replace("hub.example.org", "jupyter.example.org");
    let b = desired(&DeployFile::parse(&edited).unwrap(), &inputs()).unwrap();
    assert_ne!(a.configs[0].name, b.configs[0].name);
    assert_eq!(a.secrets, b.secrets, "secrets are unchanged");
}

#[test]
fn a_trial_password_is_a_secret_the_hub_reads() {
    let text = LOCAL.replace(
        "kind = \"dummy\"",
        "kind = \"dummy\"\npassword_file = \"/x/password\"",
    );
    let f = DeployFile::parse(&text).unwrap();
    assert!(matches!(
        desired(&f, &Inputs::default()),
        Err(crate::DeployError::MissingInput(_))
    ));
    let with = Inputs {
        password: Some(b"correct horse".to_vec()),
        ..Default::default()
    };
    let d = desired(&f, &with).unwrap();
    let secret = d
        .secrets
        .iter()
        .find(|s| s.role == Role::DummyPassword)
        .unwrap();
    assert_eq!(secret.data, SecretData::Bytes(b"correct horse".to_vec()));
    let hub = service(&d, "trial-hub");
    assert!(
        hub.secrets
            .iter()
            .any(|s| s.target == "/run/secrets/dummy-password")
    );
    let py = config_text(&d);
    assert!(
        py.contains("\"password_path\": \"/run/secrets/dummy-password\","),
        "{py}"
    );
    assert!(!py.contains("correct horse"));
    let github = PRODUCTION.replace(
        "kind = \"github\"",
        "kind = \"github\"\npassword_file = \"p\"",
    );
    let e = DeployFile::parse(&github).unwrap_err().to_string();
    assert!(e.contains("field auth.password_file"), "{e}");
}

#[test]
fn a_postgresql_hub_keeps_its_lease_there_and_its_password_in_a_secret() {
    let text = PRODUCTION.replace("# database = {", "database = {");
    let f = DeployFile::parse(&text).unwrap();
    let err = desired(&f, &inputs()).unwrap_err();
    assert!(
        err.to_string().contains("hub.database.password_file"),
        "{err}"
    );
    let d = desired(
        &f,
        &Inputs {
            db_password: Some(b"pg-s3cret".to_vec()),
            ..inputs()
        },
    )
    .unwrap();
    let secret = d
        .secrets
        .iter()
        .find(|s| s.role == Role::HubDbPassword)
        .unwrap();
    assert!(
        secret.name.starts_with("jhub-hub-db-password-"),
        "{}",
        secret.name
    );
    let hub = service(&d, "jhub-hub");
    let url = "postgresql://jupyterhub@db.example.org:5432/jupyterhub";
    let store = hub.command.iter().position(|a| a == "--store").unwrap();
    assert_eq!(
        hub.command[store + 1..store + 4],
        [url, "--password-file", "/run/secrets/hub-db-password"]
    );
    assert!(
        hub.secrets
            .iter()
            .any(|s| s.target == "/run/secrets/hub-db-password")
    );
    let py = config_text(&d);
    let wanted = format!(
        "\"db_url\": \"{}\",",
        url.replace("postgresql:", "postgresql+psycopg2:")
    );
    assert!(py.contains(&wanted), "missing {wanted:?} in\n{py}");
    let everything = format!("{py}{:?}", d.services);
    assert!(!everything.contains("pg-s3cret"), "the password leaked");
    assert!(!d.hub_db_on_storage);
    assert!(production().hub_db_on_storage);
}
