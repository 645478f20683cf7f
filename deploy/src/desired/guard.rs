//! The Docker API guard (`hubgate docker-guard`): a task on every manager,
//! the only one of the deployment's long-running tasks that holds the
//! engine's socket. It serves each guarded task a socket of its own in a
//! volume only the two share on each node (never on a network):
//! hubgate's discovery under the `discovery` policy (the reads discovery
//! makes, environment values redacted, nothing writable), the hub under
//! the `spawner` policy (the deployment's user servers and their token
//! secrets only, as this file allows them).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::hub_config::{Volumes, user_volume_labels};
use super::layout::{
    GUARD_CONFIG_PATH, GUARD_DISCOVERY_DIR, GUARD_DISCOVERY_SOCKET, GUARD_SPAWNER_DIR,
    GUARD_SPAWNER_SOCKET, HUBGATE_UID, SERVER_PREFIX, names,
};
use super::parts::{blob, file_ref, labels, socket};
use super::profiles::server_kinds;
use crate::file::DeployFile;
use crate::model::{BlobWant, Mode, MountWant, ResourcesWant, Role, SPAWNED_LABEL, ServiceWant};

/// The guard's service, its configuration, and the socket volumes the
/// guarded tasks mount.
pub(super) struct Guard {
    pub(super) service: ServiceWant,
    pub(super) config: BlobWant,
    /// hubgate's view of its guarded socket.
    pub(super) discovery_mount: MountWant,
    /// The hub's.
    pub(super) spawner_mount: MountWant,
}

/// The prefix of every user server's token secret.
pub(super) fn token_secret_prefix(f: &DeployFile) -> String {
    format!("{}-token-", f.name)
}

/// The spawner policy: what the hub may make, from the file.
fn spawner_policy(f: &DeployFile, v: &Volumes<'_>, singleuser_config: &str) -> Value {
    let s = &f.singleuser;
    let nanos = |c: Option<f64>| c.map(|c| (c * 1e9).ceil() as u64);
    let bytes = |m: Option<crate::file::Size>| m.map(|m| m.0);
    json!({
        "kind": "spawner",
        "label": SPAWNED_LABEL,
        "deployment": f.name,
        "name_prefix": format!("{SERVER_PREFIX}-"),
        "secret_prefix": token_secret_prefix(f),
        "network": f.network.name,
        "configs": [singleuser_config],
        "uid": s.uid,
        "volume": {
            "name": v.name,
            "target": s.notebook_dir,
            "driver": "local",
            "options": v.options,
            "labels": user_volume_labels(f, v),
        },
        "servers": server_kinds(f).iter().map(|k| json!({
            "image": k.image,
            "constraints": k.constraints,
            "limits": {
                "cpu_limit": nanos(k.resources.cpu_limit),
                "memory_limit": bytes(k.resources.memory_limit),
                "cpu_reservation": nanos(k.resources.cpu_reservation),
                "memory_reservation": bytes(k.resources.memory_reservation),
            },
            "generic": k.generic,
            "mounts": k.mounts,
        })).collect::<Vec<_>>(),
    })
}

/// A socket volume of the guard's, as the guard mounts it.
fn socket_volume(f: &DeployFile, what: &str, target: &str) -> MountWant {
    MountWant {
        bind: false,
        source: format!("{}-guard-{what}", f.name),
        target: target.to_owned(),
        read_only: false,
        driver_opts: BTreeMap::new(),
        labels: labels(f, Role::GuardSocket),
    }
}

/// The guard of `f`; `v` and `singleuser_config` are what its user
/// servers mount.
pub(super) fn guard(f: &DeployFile, v: &Volumes<'_>, singleuser_config: &str) -> Guard {
    let text = json!({"sockets": [
        {
            "path": GUARD_DISCOVERY_SOCKET,
            "owner": HUBGATE_UID,
            "policy": {"kind": "discovery", "service": names(f).hubgate},
        },
        {
            "path": GUARD_SPAWNER_SOCKET,
            // The hub runs as root in its container (it makes the users'
            // directories on the storage); root there is not root on the
            // node once it holds no engine socket.
            "owner": 0,
            "policy": spawner_policy(f, v, singleuser_config),
        },
    ]})
    .to_string();
    let config = blob(f, Role::GuardConfig, text.as_bytes());
    let volume = socket_volume(f, "discovery", GUARD_DISCOVERY_DIR);
    let spawner = socket_volume(f, "spawner", GUARD_SPAWNER_DIR);
    let service = ServiceWant {
        name: names(f).guard,
        image: f.proxy.image.clone(),
        command: vec![],
        args: vec![
            "docker-guard".into(),
            format!("--config={GUARD_CONFIG_PATH}"),
        ],
        env: BTreeMap::new(),
        labels: labels(f, Role::DockerGuard),
        // Root in its container: it makes its socket in a volume root owns
        // and hands it to hubgate's uid. It is on no network, and holding
        // the engine's socket is root on the node whatever its uid.
        user: "0:0".to_owned(),
        mode: Mode::Global,
        constraints: vec!["node.role==manager".to_owned()],
        max_per_node: 0,
        mounts: vec![socket(false), volume.clone(), spawner.clone()],
        secrets: vec![],
        configs: vec![file_ref(&config, GUARD_CONFIG_PATH)],
        ports: vec![],
        dnsrr: true,
        // On no network: nothing but the tasks that mount its volume
        // reaches it.
        networks: vec![],
        resources: ResourcesWant::default(),
        // The new task serves before the old one stops (each binds the
        // sockets anew; neither removes them when it ends): the hub's
        // lease counts an engine that does not answer as a lost node.
        start_first: true,
        spec_hash: false,
        update_delay_secs: 0,
        stop_grace_secs: 5,
        capabilities: vec![],
        // Its sockets answer `/_ping` through it (the image's own check
        // asks hubgate's proxy port, which the guard does not serve).
        healthcheck: vec![
            "/usr/local/bin/hubgate".into(),
            "docker-guard".into(),
            format!("--config={GUARD_CONFIG_PATH}"),
            "--check".into(),
        ],
    };
    Guard {
        service,
        config,
        discovery_mount: MountWant {
            read_only: true,
            ..volume
        },
        spawner_mount: MountWant {
            read_only: true,
            ..spawner
        },
    }
}
