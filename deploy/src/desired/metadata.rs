//! The services on every node user servers may run on
//! (`singleuser.constraints`), from hubgate's image:
//! - the cloud-metadata block, `hubgate deploy block-metadata` on the
//!   node's network with `CAP_NET_ADMIN` added (the one service of the
//!   deployment with a capability beyond the engine's defaults; user
//!   servers get none): its rules refuse what the node forwards from its
//!   swarm containers to the blocked addresses;
//! - with GPU profiles, the network anchor, `hubgate deploy anchor`: a task
//!   on the servers' network that keeps the node's attachment to it. On
//!   engines before 23.0 the swarm rejects a task holding generic
//!   resources whenever its node changes (moby/moby#44378), and a node
//!   gains and loses its attachment with the first and last task of the
//!   network there: without the anchor a GPU server's own arrival rejected
//!   it, again and again.

use std::collections::BTreeMap;

use super::parts::labels;
use crate::file::DeployFile;
use crate::metadata::{GATEWAY_BRIDGE, table_name};
use crate::model::{Mode, NO_HEALTHCHECK, ResourcesWant, Role, ServiceWant};

/// The block's service, when `singleuser.cloud_metadata.block` is on.
pub(super) fn service(f: &DeployFile) -> Option<ServiceWant> {
    let m = &f.singleuser.cloud_metadata;
    if !m.block {
        return None;
    }
    let mut args: Vec<String> = vec![
        "deploy".into(),
        "block-metadata".into(),
        format!("--table={}", table_name(&f.name)),
        format!("--interface={GATEWAY_BRIDGE}"),
    ];
    args.extend(m.addresses.iter().map(|a| format!("--address={a}")));
    let mut check = vec!["/usr/local/bin/hubgate".to_owned()];
    check.extend(args.iter().cloned());
    check.push("--check".into());
    Some(ServiceWant {
        // nft needs root and CAP_NET_ADMIN in the node's network
        // namespace; it holds no socket, secret or volume.
        user: "0:0".to_owned(),
        networks: vec!["host".to_owned()],
        // One table per deployment: the old task removes it as it stops,
        // the new one makes it again.
        start_first: false,
        capabilities: vec!["CAP_NET_ADMIN".to_owned()],
        // The table is in place (the image's own check asks hubgate's
        // proxy port, which this task does not serve).
        healthcheck: check,
        ..node_service(f, Role::MetadataBlock, args)
    })
}

/// The network anchor, when a profile reserves generic resources.
pub(super) fn anchor(f: &DeployFile) -> Option<ServiceWant> {
    let gpus = f
        .singleuser
        .profiles
        .iter()
        .any(|p| !p.generic_resources.is_empty());
    if !gpus {
        return None;
    }
    Some(ServiceWant {
        // The image's unprivileged user.
        user: String::new(),
        networks: vec![f.network.name.clone()],
        // A new task joins before the old one leaves: the attachment stays.
        start_first: true,
        capabilities: vec![],
        // It serves nothing to check (the image's own check asks hubgate's
        // proxy port).
        healthcheck: vec![NO_HEALTHCHECK.to_owned()],
        ..node_service(
            f,
            Role::NetworkAnchor,
            vec!["deploy".into(), "anchor".into()],
        )
    })
}

/// A service of hubgate's image running `args`, one task on every node
/// user servers may run on, holding no socket, secret or volume.
fn node_service(f: &DeployFile, role: Role, args: Vec<String>) -> ServiceWant {
    ServiceWant {
        name: format!("{}-{role}", f.name),
        image: f.proxy.image.clone(),
        command: vec![],
        args,
        env: BTreeMap::new(),
        labels: labels(f, role),
        user: String::new(),
        mode: Mode::Global,
        constraints: f.singleuser.constraints.clone(),
        max_per_node: 0,
        mounts: vec![],
        secrets: vec![],
        configs: vec![],
        ports: vec![],
        dnsrr: true,
        networks: vec![],
        resources: ResourcesWant::default(),
        start_first: false,
        spec_hash: false,
        update_delay_secs: 0,
        stop_grace_secs: 5,
        capabilities: vec![],
        healthcheck: vec![],
    }
}
