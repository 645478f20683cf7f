//! The Docker API guard (`hubgate docker-guard`): a task on every manager,
//! the only one of the deployment's long-running tasks that holds the
//! engine's socket. It serves hubgate's discovery a guarded socket in a
//! volume only the two share on each node (never on a network), under the
//! `discovery` policy: the reads discovery makes, environment values
//! redacted, nothing writable.

use std::collections::BTreeMap;

use serde_json::json;

use super::layout::{
    GUARD_CONFIG_PATH, GUARD_DISCOVERY_DIR, GUARD_DISCOVERY_SOCKET, HUBGATE_UID, names,
};
use super::parts::{blob, file_ref, labels, socket};
use crate::file::DeployFile;
use crate::model::{BlobWant, Mode, MountWant, ResourcesWant, Role, ServiceWant};

/// The guard's service, its configuration, and the socket volume a
/// guarded task mounts.
pub(super) struct Guard {
    pub(super) service: ServiceWant,
    pub(super) config: BlobWant,
    /// hubgate's view of its guarded socket.
    pub(super) discovery_mount: MountWant,
}

/// The guard of `f`.
pub(super) fn guard(f: &DeployFile) -> Guard {
    let text = json!({"sockets": [{
        "path": GUARD_DISCOVERY_SOCKET,
        "owner": HUBGATE_UID,
        "policy": {"kind": "discovery", "service": names(f).hubgate},
    }]})
    .to_string();
    let config = blob(f, Role::GuardConfig, text.as_bytes());
    let volume = MountWant {
        bind: false,
        source: format!("{}-guard-discovery", f.name),
        target: GUARD_DISCOVERY_DIR.to_owned(),
        read_only: false,
        driver_opts: BTreeMap::new(),
        labels: labels(f, Role::GuardSocket),
    };
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
        mounts: vec![socket(false), volume.clone()],
        secrets: vec![],
        configs: vec![file_ref(&config, GUARD_CONFIG_PATH)],
        ports: vec![],
        dnsrr: true,
        // On no network: nothing but the tasks that mount its volume
        // reaches it.
        networks: vec![],
        resources: ResourcesWant::default(),
        start_first: false,
        spec_hash: false,
        update_delay_secs: 0,
        stop_grace_secs: 5,
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
    }
}
