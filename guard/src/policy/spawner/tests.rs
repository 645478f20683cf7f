use serde_json::{Value, json};

use super::*;
use crate::target::parse;

fn policy() -> SpawnerPolicy {
    serde_json::from_value(json!({
        "label": "hubgate.spawned",
        "deployment": "jhub",
        "name_prefix": "jupyter-",
        "secret_prefix": "jhub-token-",
        "servers": [
            {
                "image": "local/su:1",
                "constraints": ["node.role==worker"],
                "limits": {"memory_limit": 2000},
                "mounts": [{
                    "source": "jhub-data-abc",
                    "target": "/home/jovyan/datasets",
                    "read_only": true,
                    "driver": "local",
                    "options": {"type": "none", "o": "bind", "device": "/srv/users/datasets"},
                    "labels": {"hubgate.deploy": "jhub", "hubgate.deploy.role": "data"},
                }],
            },
            {
                "image": "local/gpu:1",
                "constraints": ["node.role==worker", "node.labels.gpu==yes"],
                "limits": {"memory_limit": 8000},
                "generic": {"NVIDIA-GPU": 1},
            },
        ],
        "network": "jhub-net",
        "configs": ["jhub-singleuser-config-abc"],
        "uid": 1000,
        "volume": {
            "name": "jhub-user-abc-{username}",
            "target": "/home/jovyan",
            "driver": "local",
            "options": {"type": "none", "o": "bind", "device": "/srv/users/{username}"},
            "labels": {"hubgate.deploy": "jhub"},
        },
    }))
    .unwrap()
}

/// What docker-py sends for SwarmSpawner's create, as HubgateSwarmSpawner
/// configures it.
fn spec() -> Value {
    json!({
        "Name": "jupyter-alice",
        "Labels": {"hubgate.spawned": "jhub"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "local/su:1",
                "Command": null,
                "Args": ["jupyterhub-singleuser"],
                "Env": ["JUPYTERHUB_SERVICE_PREFIX=/user/alice/"],
                "Mounts": [{
                    "Target": "/home/jovyan",
                    "Source": "jhub-user-abc-alice",
                    "Type": "volume",
                    "ReadOnly": false,
                    "VolumeOptions": {
                        "Labels": {"hubgate.deploy": "jhub"},
                        "DriverConfig": {"Name": "local", "Options": {
                            "type": "none", "o": "bind", "device": "/srv/users/alice"}},
                    },
                }],
                "Secrets": [{"SecretName": "jhub-token-1", "SecretID": "sid",
                    "File": {"Name": "hubgate-api-token", "UID": "1000", "GID": "1000", "Mode": 256}}],
                "Configs": [{"ConfigName": "jhub-singleuser-config-abc", "ConfigID": "cid",
                    "File": {"Name": "/etc/x/c.py", "UID": "1000", "GID": "1000", "Mode": 292}}],
            },
            "Resources": {"Limits": {"MemoryBytes": 2000}},
            "Placement": {"Constraints": ["node.role==worker"]},
            "Networks": [{"Target": "jhub-net"}],
        },
        "Mode": null,
        "Networks": null,
        "EndpointSpec": {"Mode": "dnsrr"},
    })
}

/// One change to the spawner's spec.
type Change = Box<dyn Fn(&mut Value)>;

fn judge_call(method: &str, target: &str, body: Option<&Value>) -> Verdict {
    let call = parse(&method.parse().unwrap(), &target.parse().unwrap()).unwrap();
    judge(&policy(), &call, body)
}

fn create(spec: &Value) -> Verdict {
    judge_call("POST", "/v1.41/services/create", Some(spec))
}

fn denied(v: &Verdict, what: &str) -> String {
    match v {
        Verdict::Deny { why, .. } => why.clone(),
        other => panic!("{what} passed: {other:?}"),
    }
}

#[test]
fn the_spawners_spec_passes_with_its_references_to_check() {
    let Verdict::AllowIfOwned(owned, Filter::Pass) = create(&spec()) else {
        panic!("{:?}", create(&spec()));
    };
    let paths: Vec<&str> = owned.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["networks/jhub-net", "configs/cid", "secrets/sid"]);
    // A missing reference is a refusal, never the engine's 404 passed on.
    assert!(owned.iter().all(|o| !o.subject));
}

/// The stop's scale to zero, as docker-py sends it: the service's spec as
/// the engine holds it (with what the engine fills in), one replica fewer.
/// The guard refused it for the engine's empty `DNSConfig`, and every stop
/// failed (JupyterHub logs nothing of a stop that raises).
#[test]
fn the_spawners_scale_to_zero_passes_with_what_the_engine_filled_in() {
    let mut current = spec();
    let task = &mut current["TaskTemplate"];
    task["ContainerSpec"]["DNSConfig"] = json!({});
    task["ContainerSpec"]["Isolation"] = json!("default");
    task["Resources"]["Reservations"] = json!({});
    task["ForceUpdate"] = json!(0);
    task["Runtime"] = json!("container");
    current["Mode"] = json!({"Replicated": {"Replicas": 0}});
    let update = judge_call(
        "POST",
        "/v1.41/services/abc/update?version=7",
        Some(&current),
    );
    assert!(matches!(update, Verdict::AllowIfOwned(..)), "{update:?}");
}

/// Each change to the spawner's spec, and the words its refusal holds.
#[test]
fn specs_that_reach_the_node_or_leave_the_deployment_are_refused() {
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "a bind of /",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Type"] = json!("bind");
                s["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Source"] = json!("/");
            }),
            "only a volume",
        ),
        (
            "the Docker socket",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Mounts"] = json!([{"Type": "bind",
                "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"}]);
            }),
            "only a volume",
        ),
        (
            "its own name servers",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["DNSConfig"] =
                    json!({"Nameservers": ["203.0.113.1"]});
            }),
            "DNSConfig is not allowed",
        ),
        (
            "a local volume binding /",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]
                    ["Options"]["device"] = json!("/");
            }),
            "driver options",
        ),
        (
            "another user's volume",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]
                    ["Options"]["device"] = json!("/srv/users/bob");
            }),
            "driver options",
        ),
        (
            "a climbing user name",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Source"] =
                    json!("jhub-user-abc-..");
            }),
            "neither a user volume nor",
        ),
        (
            "a second mount",
            Box::new(|s| {
                let m = s["TaskTemplate"]["ContainerSpec"]["Mounts"][0].clone();
                s["TaskTemplate"]["ContainerSpec"]["Mounts"] = json!([m.clone(), m]);
            }),
            "a second user volume",
        ),
        (
            "a foreign image",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Image"] = json!("alpine");
            }),
            "not one of the file's images",
        ),
        (
            "host network",
            Box::new(|s| {
                s["TaskTemplate"]["Networks"] = json!([{"Target": "host"}]);
            }),
            "",
        ),
        (
            "published ports",
            Box::new(|s| {
                s["EndpointSpec"]["Ports"] = json!([{"PublishedPort": 22, "TargetPort": 22}]);
            }),
            "Ports is not allowed",
        ),
        (
            "added capabilities",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["CapabilityAdd"] = json!(["CAP_SYS_ADMIN"]);
            }),
            "CapabilityAdd is not allowed",
        ),
        (
            "sysctls",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Sysctls"] = json!({"net.ipv4.ip_forward": "1"});
            }),
            "Sysctls is not allowed",
        ),
        (
            "privileges",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Privileges"] =
                    json!({"Seccomp": {"Mode": "unconfined"}});
            }),
            "Privileges is not allowed",
        ),
        (
            "a name outside the pattern",
            Box::new(|s| {
                s["Name"] = json!("postgres");
            }),
            "not a user server's",
        ),
        (
            "no spawned label",
            Box::new(|s| {
                s["Labels"] = json!({});
            }),
            "lacks hubgate.spawned=jhub",
        ),
        (
            "a routing label",
            Box::new(|s| {
                s["Labels"]["hubgate.host"] = json!("evil.example");
            }),
            "Labels.hubgate.host",
        ),
        (
            "a global service",
            Box::new(|s| {
                s["Mode"] = json!({"Global": {}});
            }),
            "Mode.Global is not allowed",
        ),
        (
            "lower-case keys mean the same",
            Box::new(|s| {
                s["mode"] = json!({"global": {}});
            }),
            "Mode.global is not allowed",
        ),
        (
            "a token in the environment",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["JUPYTERHUB_API_TOKEN=abc"]);
            }),
            "the token is a Docker secret",
        ),
        (
            "memory over the file's limit",
            Box::new(|s| {
                s["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] = json!(4000);
            }),
            "over the file's 2000",
        ),
        (
            "no memory limit",
            Box::new(|s| {
                s["TaskTemplate"]["Resources"] = json!({});
            }),
            "limits are missing",
        ),
        (
            "the file's constraint dropped",
            Box::new(|s| {
                s["TaskTemplate"]["Placement"]["Constraints"] = json!([]);
            }),
            "lacks the file's",
        ),
        (
            "a runtime target for a secret",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["File"] = json!(null);
            }),
            "only a file",
        ),
        (
            "root",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["User"] = json!("0");
            }),
            "servers run as 1000",
        ),
        (
            "a plugin runtime",
            Box::new(|s| {
                s["TaskTemplate"]["Runtime"] = json!("plugin");
            }),
            "only containers",
        ),
    ];
    for (what, change, words) in cases {
        let mut s = spec();
        change(&mut s);
        let verdict = create(&s);
        // The host network is refused once the engine names it (its name is
        // not the deployment's network's).
        if words.is_empty() {
            let Verdict::AllowIfOwned(owned, _) = verdict else {
                panic!("{what}")
            };
            assert!(!owned[0].holds(&json!({"Name": "host"})), "{what}");
            continue;
        }
        let why = denied(&verdict, what);
        assert!(why.contains(words), "{what}: {why}");
    }
}

#[test]
fn calls_on_services_secrets_and_tasks_are_checked_against_the_engine() {
    let owned = |v: Verdict| match v {
        Verdict::AllowIfOwned(o, _) => o.into_iter().map(|o| o.path).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        owned(judge_call("GET", "/v1.41/services/jupyter-alice", None)),
        ["services/jupyter-alice"]
    );
    assert_eq!(
        owned(judge_call("DELETE", "/v1.41/services/abc123", None)),
        ["services/abc123"]
    );
    let update = judge_call(
        "POST",
        "/v1.41/services/abc/update?version=7",
        Some(&spec()),
    );
    assert_eq!(owned(update)[0], "services/abc");
    assert_eq!(
        owned(judge_call("DELETE", "/v1.41/secrets/s1", None)),
        ["secrets/s1"]
    );
    let tasks = "/v1.41/tasks?filters=%7B%22service%22%3A%5B%22jupyter-alice%22%5D%7D";
    assert_eq!(
        owned(judge_call("GET", tasks, None)),
        ["services/jupyter-alice"]
    );
    let secret =
        json!({"Name": "jhub-token-1", "Labels": {"hubgate.spawned": "jhub"}, "Data": "dG9r"});
    assert!(matches!(
        judge_call("POST", "/v1.41/secrets/create", Some(&secret)),
        Verdict::Allow(_)
    ));
    assert_eq!(
        judge_call("GET", "/v1.41/nodes", None),
        Verdict::Allow(Filter::NodeStates)
    );
    let listed = "/v1.41/secrets?filters=%7B%22label%22%3A%5B%22hubgate.spawned%3Djhub%22%5D%7D";
    assert!(matches!(judge_call("GET", listed, None), Verdict::Allow(_)));
    let label = Want::Label("hubgate.spawned".into(), "jhub".into());
    let o = Owned::subject(Kind::Services, "x", label).unwrap();
    assert!(o.subject);
    assert!(o.holds(&json!({"Spec": {"Labels": {"hubgate.spawned": "jhub"}}})));
    assert!(!o.holds(&json!({"Spec": {"Labels": {"hubgate.deploy": "jhub"}}})));
}

#[test]
fn everything_else_is_refused() {
    let secret =
        |name: &str, labels: Value| json!({"Name": name, "Labels": labels, "Data": "eA=="});
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "POST",
            "/v1.41/containers/create",
            Some(json!({"Image": "alpine", "HostConfig": {"Privileged": true}})),
        ),
        (
            "POST",
            "/v1.41/containers/x/exec",
            Some(json!({"Cmd": ["sh"]})),
        ),
        ("GET", "/v1.41/containers/x/archive?path=/srv", None),
        ("GET", "/v1.41/secrets/x", None),
        ("GET", "/v1.41/secrets", None),
        (
            "POST",
            "/v1.41/secrets/create",
            Some(secret("jhub-cookie", json!({"hubgate.spawned": "jhub"}))),
        ),
        (
            "POST",
            "/v1.41/secrets/create",
            Some(secret("jhub-token-1", json!({}))),
        ),
        ("GET", "/v1.41/configs/jhub-hub-config-1", None),
        (
            "POST",
            "/v1.41/configs/create",
            Some(json!({"Name": "x", "Data": ""})),
        ),
        ("GET", "/v1.41/swarm", None),
        ("POST", "/v1.41/swarm/leave?force=1", None),
        (
            "POST",
            "/v1.41/nodes/n1/update?version=1",
            Some(json!({"Role": "worker"})),
        ),
        ("POST", "/v1.41/plugins/pull?remote=x", Some(json!([]))),
        ("POST", "/v1.41/images/create?fromImage=alpine", None),
        ("POST", "/v1.41/images/load", None),
        (
            "POST",
            "/v1.41/volumes/create",
            Some(json!({"Name": "v", "DriverOpts": {"device": "/"}})),
        ),
        ("GET", "/v1.41/services", None),
        ("GET", "/v1.41/tasks", None),
        ("GET", "/v1.41/nodes/n1", None),
        ("GET", "/v1.41/nodes?filters=%7B%7D", None),
        (
            "GET",
            "/v1.41/tasks?filters=%7B%22node%22%3A%5B%22n%22%5D%2C%22service%22%3A%5B%22a%22%5D%7D",
            None,
        ),
        (
            "POST",
            "/v1.41/services/abc/update?version=1&registryAuthFrom=previous-spec",
            Some(spec()),
        ),
        ("GET", "/v1.41/services/a/logs", None),
    ];
    for (method, target, body) in cases {
        let v = judge_call(method, target, body.as_ref());
        denied(&v, &format!("{method} {target}"));
    }
}

/// A GPU profile's server: its image with its own limits, its placement
/// and its one GPU; each mixed with the other profile's is refused.
#[test]
fn each_profile_passes_with_its_own_image_limits_placement_and_gpus() {
    let gpu = |s: &mut Value| {
        let t = &mut s["TaskTemplate"];
        t["ContainerSpec"]["Image"] = json!("local/gpu:1");
        t["Resources"] = json!({
            "Limits": {"MemoryBytes": 8000},
            "Reservations": {"GenericResources": [
                {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]},
        });
        t["Placement"]["Constraints"] = json!(["node.role==worker", "node.labels.gpu==yes"]);
    };
    let mut s = spec();
    gpu(&mut s);
    assert!(
        matches!(create(&s), Verdict::AllowIfOwned(..)),
        "{:?}",
        create(&s)
    );
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "two GPUs",
            Box::new(|s| {
                s["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"][0]["DiscreteResourceSpec"]
                    ["Value"] = json!(2);
            }),
            "the file gives 1",
        ),
        (
            "the GPU image off the GPU nodes",
            Box::new(|s| {
                s["TaskTemplate"]["Placement"]["Constraints"] = json!(["node.role==worker"]);
            }),
            "lacks the file's \"node.labels.gpu==yes\"",
        ),
        (
            "a GPU with the plain image",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Image"] = json!("local/su:1");
                s["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] = json!(2000);
            }),
            "the file gives none",
        ),
        (
            "the plain image with the GPU profile's memory",
            Box::new(|s| {
                s["TaskTemplate"]["ContainerSpec"]["Image"] = json!("local/su:1");
                s["TaskTemplate"]["Resources"] = json!({"Limits": {"MemoryBytes": 8000}});
            }),
            "over the file's 2000",
        ),
        (
            "a named resource",
            Box::new(|s| {
                s["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"] =
                    json!([{"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-0"}}]);
            }),
            "NamedResourceSpec",
        ),
    ];
    for (what, change, words) in cases {
        let mut s = spec();
        gpu(&mut s);
        change(&mut s);
        let why = denied(&create(&s), what);
        assert!(why.contains(words), "{what}: {why}");
    }
}

/// The shared dataset of the plain profile: read-only, exactly as the file
/// makes it, once; not on the GPU profile's servers.
#[test]
fn data_volumes_pass_only_as_the_file_makes_them() {
    let dataset = json!({
        "Target": "/home/jovyan/datasets",
        "Source": "jhub-data-abc",
        "Type": "volume",
        "ReadOnly": true,
        "VolumeOptions": {
            "Labels": {"hubgate.deploy": "jhub", "hubgate.deploy.role": "data"},
            "DriverConfig": {"Name": "local", "Options": {
                "type": "none", "o": "bind", "device": "/srv/users/datasets"}},
        },
    });
    let with = |change: &dyn Fn(&mut Value)| {
        let mut s = spec();
        let mut d = dataset.clone();
        change(&mut d);
        let mounts = &mut s["TaskTemplate"]["ContainerSpec"]["Mounts"];
        mounts.as_array_mut().unwrap().push(d);
        s
    };
    let passes = with(&|_| {});
    assert!(
        matches!(create(&passes), Verdict::AllowIfOwned(..)),
        "{:?}",
        create(&passes)
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "writable",
            with(&|d| d["ReadOnly"] = json!(false)),
            "not read-only",
        ),
        (
            "another device",
            with(&|d| d["VolumeOptions"]["DriverConfig"]["Options"]["device"] = json!("/")),
            "driver options other than",
        ),
        (
            "elsewhere",
            with(&|d| d["Target"] = json!("/etc")),
            "mounted elsewhere",
        ),
        (
            "a bind",
            with(&|d| d["Type"] = json!("bind")),
            "only a volume",
        ),
        (
            "twice",
            {
                let mut s = with(&|_| {});
                let m = &mut s["TaskTemplate"]["ContainerSpec"]["Mounts"];
                let again = m[1].clone();
                m.as_array_mut().unwrap().push(again);
                s
            },
            "mounted twice",
        ),
        (
            "on a GPU server",
            {
                let mut s = with(&|_| {});
                let t = &mut s["TaskTemplate"];
                t["ContainerSpec"]["Image"] = json!("local/gpu:1");
                t["Placement"]["Constraints"] =
                    json!(["node.role==worker", "node.labels.gpu==yes"]);
                s
            },
            "nor one of this server's data volumes",
        ),
    ];
    for (what, spec, words) in cases {
        let why = denied(&create(&spec), what);
        assert!(why.contains(words), "{what}: {why}");
    }
}
