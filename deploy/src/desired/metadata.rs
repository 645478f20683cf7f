//! The cloud-metadata block: a global service on every node user servers
//! may run on (`singleuser.constraints`), hubgate's image running `hubgate
//! deploy block-metadata` on the node's network with `CAP_NET_ADMIN` added
//! (the one service of the deployment with a capability beyond the
//! engine's defaults; user servers get none). Its rules refuse what the
//! node forwards from its swarm containers to the blocked addresses.

use std::collections::BTreeMap;

use super::parts::labels;
use crate::file::DeployFile;
use crate::metadata::{GATEWAY_BRIDGE, table_name};
use crate::model::{Mode, ResourcesWant, Role, ServiceWant};

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
        name: format!("{}-metadata-block", f.name),
        image: f.proxy.image.clone(),
        command: vec![],
        args,
        env: BTreeMap::new(),
        labels: labels(f, Role::MetadataBlock),
        // nft needs root and CAP_NET_ADMIN in the node's network
        // namespace; it holds no socket, secret or volume.
        user: "0:0".to_owned(),
        mode: Mode::Global,
        constraints: f.singleuser.constraints.clone(),
        max_per_node: 0,
        mounts: vec![],
        secrets: vec![],
        configs: vec![],
        ports: vec![],
        dnsrr: true,
        networks: vec!["host".to_owned()],
        resources: ResourcesWant::default(),
        // One table per deployment: the old task removes it as it stops,
        // the new one makes it again.
        start_first: false,
        spec_hash: false,
        update_delay_secs: 0,
        stop_grace_secs: 5,
        capabilities: vec!["CAP_NET_ADMIN".to_owned()],
        // The table is in place (the image's own check asks hubgate's
        // proxy port, which this task does not serve).
        healthcheck: check,
    })
}
