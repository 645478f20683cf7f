//! `hubgate deploy` on this machine's single-node swarm: the objects it
//! makes (read back from the engine), idempotence, edits that touch only
//! what they must, destroy, GitHub OAuth's redirect, bad input (the real
//! JupyterHub and the operator's second day are in `day_two`).

use crate::cluster::{docker, docker_ok, free_port, unique};
use crate::deployment::{Deployment, User, deploy_images, inspect, local_file};

pub fn service_spec(name: &str) -> serde_json::Value {
    inspect("service", name)["Spec"].clone()
}

fn id_of(kind: &str, name: &str) -> String {
    let v = inspect(kind, name);
    // Networks say "Id", swarm objects "ID".
    v["ID"].as_str().or(v["Id"].as_str()).unwrap().to_owned()
}

fn names(kind: &str, label: &str) -> Vec<String> {
    let out = docker(&[
        kind,
        "ls",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Name}}",
    ]);
    out.lines().map(str::to_owned).collect()
}

/// A deployment with NFS storage, GitHub OAuth and ACME: what production
/// runs. Its hub cannot mount NFS on this machine (no NFS client in the
/// kernel), so this test checks objects, not running services.
fn production_like(name: &str) -> Deployment {
    let i = deploy_images();
    let text = format!(
        r#"name = "{name}"
hosts = ["hub.test.example"]

[hub]
image = "{hub}"
resources = {{ cpu_limit = 1.0, memory_limit = "1G" }}
idle_timeout = "1h"
# No such node: the hub's tasks wait unscheduled. Scheduled, they would fail
# on the NFS mount (no NFS client here) and the swarm would roll an update
# back before the test reads the service's spec (seen once under load).
node = "no-such-node"

[singleuser]
image = "{singleuser}"
resources = {{ cpu_limit = 2.0, memory_limit = "2G" }}

[network]
name = "{name}-net"

[storage]
nfs = {{ server = "192.0.2.10", export = "/srv/users" }}

[auth]
kind = "github"
client_id = "test-client-id"
client_secret_file = "github-secret"
allowed_users = ["alice"]

[proxy]
image = "{hubgate}"
http_port = {http}
https_port = {https}

[tls]
acme_email = "ops@test.example"
acme_directory = "https://192.0.2.1/directory"
"#,
        hub = i.hub,
        singleuser = i.singleuser,
        hubgate = i.hubgate,
        http = free_port(),
        https = free_port(),
    );
    let d = Deployment::new(name, &text);
    std::fs::write(d.dir.path().join("github-secret"), "the-client-secret\n").unwrap();
    d
}

#[test]
fn apply_makes_the_objects_and_a_second_apply_changes_nothing() {
    let name = unique("objects").replace('-', "");
    let d = production_like(&name);
    let label = format!("hubgate.deploy={name}");
    let applied = d.ok(&["apply", "--no-wait", "--skip-nfs-check", "FILE"]);
    // Network, hub config, hubgate's hub and spawner modules and lease
    // entrypoint, the servers' config, the guard's config, proxy token,
    // client secret, cookie secret, crypt key, hub, hubgate, the Docker API
    // guard, the cloud-metadata block.
    assert!(
        applied.contains("15 to create, 0 to change, 0 to remove."),
        "{applied}"
    );

    // The network.
    let net = inspect("network", &format!("{name}-net"));
    assert_eq!(net["Driver"], "overlay");
    assert_eq!(net["Attachable"], true);
    // The hub's configuration, a Docker config, with the callback URL.
    let configs = names("config", &label);
    assert_eq!(configs.len(), 6, "{configs:?}");
    let hub_config = configs
        .iter()
        .find(|c| c.starts_with(&format!("{name}-hub-config-")))
        .unwrap();
    let data = inspect("config", hub_config)["Spec"]["Data"]
        .as_str()
        .unwrap()
        .to_owned();
    let py = String::from_utf8(decode_base64(&data)).unwrap();
    let callback = py.lines().find(|l| l.contains("callback_url")).unwrap();
    assert!(
        callback.contains("\"https://hub.test.example:")
            && callback.ends_with("/hub/oauth_callback\","),
        "{callback}"
    );
    assert!(
        !py.contains("the-client-secret"),
        "the client secret is in the config"
    );
    // The proxy token, the client secret, JupyterHub's cookie secret and
    // crypt key: Docker secrets.
    let mut secrets = names("secret", &label);
    secrets.sort();
    assert_eq!(secrets.len(), 4, "{secrets:?}");
    assert!(secrets.contains(&format!("{name}-hub-cookie-secret")));
    assert!(
        secrets
            .iter()
            .any(|s| s.starts_with(&format!("{name}-oauth-client-secret-")))
    );
    assert!(secrets.contains(&format!("{name}-proxy-token")));

    // The hub: every manager, socket, SwarmSpawner's network, NFS options
    // as Docker records them in the mount, secrets as files, dnsrr, the
    // lease entrypoint, routed once /hub/health answers.
    let hub = service_spec(&format!("{name}-hub"));
    assert!(hub["Mode"]["Global"].is_object());
    assert_eq!(hub["Labels"]["hubgate.health.path"], "/hub/health");
    let task = &hub["TaskTemplate"];
    assert_eq!(
        task["ContainerSpec"]["Command"][1],
        "/srv/jupyterhub/hubgate/hubgate_lease.py"
    );
    assert_eq!(task["Placement"]["Constraints"][0], "node.role==manager");
    assert_eq!(hub["EndpointSpec"]["Mode"], "dnsrr");
    assert_eq!(task["Resources"]["Limits"]["NanoCPUs"], 1_000_000_000);
    let mounts = task["ContainerSpec"]["Mounts"].as_array().unwrap();
    let storage = mounts
        .iter()
        .find(|m| m["Target"] == "/srv/hubgate-storage")
        .unwrap();
    let opts = &storage["VolumeOptions"]["DriverConfig"]["Options"];
    assert_eq!(opts["type"], "nfs");
    assert_eq!(opts["o"], "addr=192.0.2.10,rw,nfsvers=4.1,hard,noatime");
    assert_eq!(opts["device"], ":/srv/users");
    // The hub holds no engine socket: the guard's spawner socket only.
    assert!(!mounts.iter().any(|m| m["Source"] == "/var/run/docker.sock"));
    assert!(
        mounts
            .iter()
            .any(|m| m["Source"] == format!("{name}-guard-spawner") && m["ReadOnly"] == true)
    );
    let hub_secrets: Vec<&str> = task["ContainerSpec"]["Secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["File"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        hub_secrets,
        [
            "/run/secrets/proxy-token",
            "/run/secrets/oauth-client-secret",
            "/run/secrets/hub-cookie-secret",
            "/run/secrets/hub-crypt-key"
        ]
    );
    let env = task["ContainerSpec"]["Env"].to_string();
    assert!(
        !env.contains("the-client-secret"),
        "the client secret is in the environment"
    );
    eprintln!(
        "NFS: the options are checked as Docker records them; no NFS mount runs here (this kernel has no NFS client)"
    );

    // hubgate: global on the managers, host-mode ports, the guard's
    // discovery socket (not the engine's), certificates on the storage,
    // the token from its secret.
    let proxy = service_spec(&format!("{name}-hubgate"));
    assert!(proxy["Mode"]["Global"].is_object());
    for p in proxy["EndpointSpec"]["Ports"].as_array().unwrap() {
        assert_eq!(p["PublishMode"], "host");
    }
    let pmounts = proxy["TaskTemplate"]["ContainerSpec"]["Mounts"]
        .as_array()
        .unwrap();
    assert!(
        pmounts
            .iter()
            .any(|m| m["Source"] == format!("{name}-guard-discovery") && m["ReadOnly"] == true)
    );
    assert!(
        !pmounts
            .iter()
            .any(|m| m["Source"] == "/var/run/docker.sock"),
        "hubgate mounts the engine's socket"
    );
    // The guard: on every manager, on no network, the engine's socket.
    let guard = service_spec(&format!("{name}-docker-guard"));
    assert!(guard["Mode"]["Global"].is_object());
    assert!(guard["TaskTemplate"]["Networks"].is_null(), "{guard}");
    let gmounts = guard["TaskTemplate"]["ContainerSpec"]["Mounts"].to_string();
    assert!(gmounts.contains("/var/run/docker.sock"), "{gmounts}");
    // The cloud-metadata block: on every node, the host's network, the one
    // capability it needs, and nothing else (no socket, no secret).
    let block = service_spec(&format!("{name}-metadata-block"));
    let c = &block["TaskTemplate"]["ContainerSpec"];
    assert!(block["Mode"]["Global"].is_object());
    assert_eq!(c["CapabilityAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert!(c["Mounts"].as_array().is_none_or(Vec::is_empty), "{c}");
    assert!(c["Secrets"].as_array().is_none_or(Vec::is_empty), "{c}");
    assert!(c["Args"].to_string().contains("--address=169.254.169.254"));
    // The swarm names the host network by an ID of its own.
    let net = block["TaskTemplate"]["Networks"][0]["Target"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        docker(&["network", "inspect", &net, "--format", "{{.Name}}"]),
        "host"
    );
    let certs = pmounts
        .iter()
        .find(|m| m["Target"] == "/var/lib/hubgate")
        .unwrap();
    assert_eq!(
        certs["VolumeOptions"]["DriverConfig"]["Options"]["device"],
        ":/srv/users/.hubgate/certs"
    );
    let args = proxy["TaskTemplate"]["ContainerSpec"]["Args"].to_string();
    assert!(args.contains("--acme-domain=hub.test.example"), "{args}");
    assert_eq!(proxy["UpdateConfig"]["Order"], "stop-first");

    // Idempotent.
    let again = d.ok(&["apply", "--no-wait", "--skip-nfs-check", "FILE"]);
    assert!(again.contains("No changes"), "{again}");

    // One edit each of the host name, the NFS address and a limit: the plan
    // names exactly the objects they touch, and apply changes only those.
    let before = (
        id_of("network", &format!("{name}-net")),
        id_of("secret", &format!("{name}-proxy-token")),
        inspect("service", &format!("{name}-hub"))["Version"]["Index"]
            .as_u64()
            .unwrap(),
    );
    d.edit("hub.test.example", "jupyter.test.example");
    d.edit("192.0.2.10", "192.0.2.20");
    d.edit("cpu_limit = 1.0", "cpu_limit = 0.5");
    let plan = d.plan();
    eprintln!("{plan}");
    let lines: Vec<&str> = plan.lines().filter(|l| !l.starts_with(' ')).collect();
    // The guard's configuration changes too: its spawner policy names the
    // user volumes' storage options.
    assert_eq!(lines.len(), 9, "{plan}");
    let starts = [
        format!("+ config {name}-hub-config-"),
        format!("+ config {name}-guard-config-"),
        format!("~ service {name}-hub"),
        format!("~ service {name}-hubgate"),
        format!("~ service {name}-docker-guard"),
        format!("- config {name}-guard-config-"),
        format!("- config {name}-hub-config-"),
        "- volumes on every node".to_owned(),
        "2 to create, 3 to change, 3 to remove.".to_owned(),
    ];
    for start in &starts {
        assert!(
            lines.iter().any(|l| l.starts_with(start.as_str())),
            "{start} in\n{plan}"
        );
    }
    for field in [
        "mounts:",
        "configs:",
        "hub settings that change:",
        "+ auth.callback_url: \"https://jupyter.test.example:",
        "cpu limit: 1 -> 0.5",
        "the storage moved from :/srv/users (addr=192.0.2.10,",
        "a service whose new tasks fail within 10 s is rolled back",
        "+ \"--acme-domain=jupyter.test.example\"",
    ] {
        assert!(plan.contains(field), "{field} missing in\n{plan}");
    }
    d.ok(&["apply", "--no-wait", "--skip-nfs-check", "FILE"]);
    let after = (
        id_of("network", &format!("{name}-net")),
        id_of("secret", &format!("{name}-proxy-token")),
        inspect("service", &format!("{name}-hub"))["Version"]["Index"]
            .as_u64()
            .unwrap(),
    );
    assert_eq!(
        (&before.0, &before.1),
        (&after.0, &after.1),
        "network and token kept"
    );
    assert!(after.2 > before.2, "the hub service was updated");
    let hub = service_spec(&format!("{name}-hub"));
    assert!(
        hub.to_string().contains("addr=192.0.2.20"),
        "{:#}",
        inspect("service", &format!("{name}-hub"))
    );
    assert_eq!(
        hub["TaskTemplate"]["Resources"]["Limits"]["NanoCPUs"],
        500_000_000
    );
    assert_eq!(
        names("config", &label).len(),
        6,
        "the old hub config is gone"
    );
    assert!(
        d.ok(&["apply", "--no-wait", "--skip-nfs-check", "FILE"])
            .contains("No changes")
    );

    // A stale user volume (made before volumes carried their storage) that
    // a running server still holds is not planned away, so apply stays
    // idempotent; once unused, plan names it.
    let volume = format!("jupyterhub-user-{name}");
    docker(&[
        "volume",
        "create",
        "--label",
        &label,
        "--label",
        "hubgate.deploy.role=user",
        &volume,
    ]);
    let holder = unique("holder");
    let mount = format!("{volume}:/data");
    let backend = &crate::cluster::images().backend;
    docker(&["run", "-d", "--name", &holder, "-v", &mount, backend]);
    let held = d.run(&["plan", "FILE"]);
    docker(&["rm", "-f", &holder]);
    let held = String::from_utf8_lossy(&held.stdout).into_owned();
    assert!(held.contains("No changes"), "{held}");
    let unused = d.plan();
    assert!(
        unused.contains(&format!("stale and unused on this node: {volume}")),
        "{unused}"
    );

    // destroy keeps a user's volume, --purge removes it.
    let out = d.ok(&["destroy", "--yes", "FILE"]);
    assert!(
        out.contains("data volume") && out.contains(&volume),
        "{out}"
    );
    for kind in ["service", "config", "secret", "network"] {
        assert!(
            names(kind, &label).is_empty(),
            "{kind}s left: {:?}",
            names(kind, &label)
        );
    }
    assert!(docker_ok(&["volume", "inspect", &volume]));
    d.ok(&["destroy", "--yes", "--purge", "FILE"]);
    assert!(!docker_ok(&["volume", "inspect", &volume]));
}

pub fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn github_oauth_redirects_with_the_callback_of_the_host_name() {
    let name = unique("oauth").replace('-', "");
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let text = local_file(&name, port, storage.path(), "")
        .replace("hosts = [\"localhost\"]", "hosts = [\"hub.test.example\"]")
        .replace(
            "kind = \"dummy\"",
            "kind = \"github\"\nclient_id = \"oauth-test-id\"\nclient_secret_file = \"secret\"\nallowed_users = [\"alice\"]",
        );
    let d = Deployment::new(&name, &text);
    std::fs::write(d.dir.path().join("secret"), "oauth-test-secret").unwrap();
    let user = User::new("nobody", vec![format!("http://127.0.0.1:{port}")]);

    d.apply();
    let callback = format!("http://hub.test.example:{port}/hub/oauth_callback");
    user.step(
        "oauth",
        &["--client-id", "oauth-test-id", "--callback", &callback],
    );
    // The hub read the secret from its Docker secret: it started with it,
    // and no spec holds it.
    let hub = service_spec(&format!("{name}-hub")).to_string();
    assert!(hub.contains("/run/secrets/oauth-client-secret") && !hub.contains("oauth-test-secret"));

    d.edit("hub.test.example", "jupyter.test.example");
    let plan = d.plan();
    assert!(
        plan.contains("+ config") && plan.contains("~ service"),
        "{plan}"
    );
    d.apply();
    let callback = format!("http://jupyter.test.example:{port}/hub/oauth_callback");
    user.step(
        "oauth",
        &["--client-id", "oauth-test-id", "--callback", &callback],
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let name = unique("errors").replace('-', "");
    let storage = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = Deployment::new(&name, &local_file(&name, port, storage.path(), ""));
    let label = format!("hubgate.deploy={name}");

    // Docker unreachable.
    let mut unreachable = Deployment::new(&name, &local_file(&name, port, storage.path(), ""));
    unreachable.docker_host = Some("unix:///nonexistent/docker.sock".into());
    let e = unreachable.fails(&["plan", "FILE"]);
    assert!(
        e.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{e}"
    );
    unreachable.keep();

    // An invalid file: line and field.
    d.edit(
        "kind = \"dummy\"",
        "kind = \"dummy\"\nallowed_users = [\"\"]",
    );
    let text = std::fs::read_to_string(&d.file).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("allowed_users"))
        .unwrap()
        + 1;
    let e = d.fails(&["plan", "FILE"]);
    assert!(
        e.contains(&format!(
            "line {line}, field auth.allowed_users: an empty name"
        )),
        "{e}"
    );
    d.edit("\nallowed_users = [\"\"]", "");

    // A missing secret file.
    d.edit(
        "kind = \"dummy\"",
        "kind = \"github\"\nclient_id = \"x\"\nclient_secret_file = \"nope\"\nallow_all = true",
    );
    let e = d.fails(&["apply", "FILE"]);
    assert!(
        e.contains("auth.client_secret_file: cannot read") && e.contains("nope"),
        "{e}"
    );
    d.edit(
        "kind = \"github\"\nclient_id = \"x\"\nclient_secret_file = \"nope\"\nallow_all = true",
        "kind = \"dummy\"",
    );

    // An image that is nowhere.
    let real = deploy_images().hub;
    d.edit(&real, "local/hubgate-missing:nowhere");
    let e = d.fails(&["apply", "FILE"]);
    assert!(
        e.contains(
            "image local/hubgate-missing:nowhere is not on this engine and cannot be pulled"
        ),
        "{e}"
    );
    d.edit("local/hubgate-missing:nowhere", &real);

    // An NFS server that does not answer.
    d.edit(
        &format!("local = \"{}\"", storage.path().display()),
        "nfs = { server = \"127.0.0.1\", export = \"/srv\" }",
    );
    let e = d.fails(&["apply", "FILE"]);
    assert!(
        e.contains("the NFS server does not answer on 2049/tcp"),
        "{e}"
    );

    // Port mistakes: refused by plan, naming the field.
    for (bad, why) in [
        ("0", "a port number, 1-65535"),
        ("80000", "a port number, 1-65535"),
        ("2377", "the swarm's cluster management port"),
    ] {
        d.edit(
            &format!("http_port = {port}"),
            &format!("http_port = {bad}"),
        );
        let e = d.fails(&["plan", "FILE"]);
        assert!(
            e.contains("field proxy.http_port") && e.contains(why),
            "{e}"
        );
        d.edit(
            &format!("http_port = {bad}"),
            &format!("http_port = {port}"),
        );
    }
    // A port another service publishes already.
    let other = unique("publisher");
    let publish = format!("mode=host,published={port},target=8080");
    let _publisher = crate::cluster::Service::create(
        &other,
        &["--publish", &publish, &crate::cluster::images().backend],
    );
    let e = d.fails(&["plan", "FILE"]);
    assert!(
        e.contains(&format!(
            "port {port} is published by the service {other} already"
        )) && e.contains("proxy.http_port"),
        "{e}"
    );

    // Nothing was made.
    for kind in ["service", "config", "secret", "network"] {
        assert!(
            names(kind, &label).is_empty(),
            "{kind} made: {:?}",
            names(kind, &label)
        );
    }
}
