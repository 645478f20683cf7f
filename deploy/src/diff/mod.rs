//! Desired against observed: the steps that make the engine match the
//! file, in the order `apply` runs them. Pure; `plan` prints the result.

use std::collections::HashSet;

use crate::desired::{Desired, hub_settings};
use crate::model::{
    BlobWant, Mode, MountWant, NetworkWant, ROLE_LABEL, Role, SecretData, ServiceWant,
};
use crate::observed::{NetworkSeen, Observed};
use crate::volumes::Keep;

/// One field of a service that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: String,
    pub to: String,
}

/// One action of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CreateNetwork(NetworkWant),
    /// Remove the deployment's services, the network, and make it anew
    /// (its options cannot change in place).
    ReplaceNetwork {
        want: NetworkWant,
        why: Vec<String>,
    },
    CreateConfig(BlobWant),
    CreateSecret(BlobWant),
    CreateService(ServiceWant),
    UpdateService {
        want: ServiceWant,
        changes: Vec<FieldChange>,
    },
    /// Remove a service and make it anew: the swarm cannot change a
    /// service's mode (replicated, global) in place.
    ReplaceService {
        want: ServiceWant,
        why: String,
    },
    RemoveService(String),
    RemoveConfig(String),
    RemoveSecret(String),
    /// Move the hub's database from the node-local volume of an earlier
    /// hubgate onto the storage (the old hub stops first).
    MigrateHubData(HubDataMove),
    /// Remove the deployment's volumes that `keep` does not keep, on every
    /// node (a one-off job: volumes are per node).
    PruneVolumes {
        keep: Keep,
        why: Vec<String>,
    },
    RemoveNetwork(String),
}

/// The hub's database moving from a node-local volume onto the storage.
#[derive(Debug, Clone, PartialEq)]
pub struct HubDataMove {
    /// The old hub service (removed first: it must not write meanwhile).
    pub hub_service: String,
    pub volume: String,
    pub node_id: String,
    pub node: String,
    /// The storage, mounted as the new hub mounts it.
    pub storage: MountWant,
    /// The secret the old cookie secret becomes.
    pub cookie_secret: String,
}

/// The steps, and what stops `apply` before it starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub problems: Vec<String>,
    /// The hub configuration's settings that change: lines of the running
    /// one that go (`-`) and of the new one that come (`+`).
    pub hub_settings: Vec<(char, String)>,
    /// The user servers' images `apply` then looks for on the nodes.
    pub image_checks: Vec<String>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn network_differences(want: &NetworkWant, seen: &NetworkSeen) -> Vec<String> {
    let mut why = vec![];
    if seen.driver != "overlay" {
        why.push(format!("driver {} (wanted overlay)", seen.driver));
    }
    if !seen.attachable {
        why.push("not attachable".to_owned());
    }
    if want.subnet.is_some() && want.subnet != seen.subnet {
        why.push(format!(
            "subnet {} (wanted {})",
            seen.subnet.as_deref().unwrap_or("(engine's)"),
            want.subnet.as_deref().unwrap_or_default()
        ));
    }
    if want.encrypted != seen.encrypted {
        why.push(format!(
            "encrypted {} (wanted {})",
            seen.encrypted, want.encrypted
        ));
    }
    why
}

/// The field-by-field changes from `seen` to `want`.
pub fn service_changes(seen: &ServiceWant, want: &ServiceWant) -> Vec<FieldChange> {
    seen.fields()
        .into_iter()
        .zip(want.fields())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, from), (_, to))| FieldChange { field, from, to })
        .collect()
}

/// The settings lines (not comments or blank lines) that differ between
/// two hub configurations: those only in `old` as `-`, only in `new` as `+`.
fn settings_changed(old: &str, new: &str) -> Vec<(char, String)> {
    let (old, new) = (hub_settings(old), hub_settings(new));
    let gone = old
        .iter()
        .filter(|l| !new.contains(l))
        .map(|l| ('-', l.clone()));
    let come = new
        .iter()
        .filter(|l| !old.contains(l))
        .map(|l| ('+', l.clone()));
    gone.chain(come).collect()
}

/// The volume job, when the storage moved or this engine shows a volume
/// the rule removes (volumes are per node: the rule runs on every node).
fn volume_step(want: &Desired, seen: &Observed) -> Option<Step> {
    let stale: Vec<&str> = seen
        .volumes
        .iter()
        .filter(|v| !want.keep.keeps(&v.name, &v.labels))
        .map(|v| v.name.as_str())
        .collect();
    let moved = match (
        storage_device(&seen.services),
        storage_device(&want.services),
    ) {
        (Some(old), Some(new)) if old.0 != new.0 => Some((old.1, new.1)),
        _ => None,
    };
    let mut why = vec![];
    if let Some((from, to)) = moved {
        let hub = if want.hub_db_on_storage {
            "; the hub's database and lease are there too (.hubgate/hub/): the hub uses the new place's, the same files when only the address changed, a new database when the place is new"
        } else {
            ""
        };
        why.push(format!(
            "the storage moved from {from} to {to}: every server started from now on, on any node, mounts a new volume with the new options; running servers keep the old storage until they stop{hub}"
        ));
    }
    if !stale.is_empty() {
        why.push(format!(
            "stale and unused on this node: {}",
            stale.join(", ")
        ));
    }
    (!why.is_empty()).then(|| Step::PruneVolumes {
        keep: want.keep.clone(),
        why,
    })
}

/// The hub's storage mount: its volume's name, and the device it mounts
/// with the mount options.
fn storage_device(services: &[ServiceWant]) -> Option<(String, String)> {
    services.iter().flat_map(|s| &s.mounts).find_map(|m| {
        (m.labels.get(ROLE_LABEL).map(String::as_str) == Some(Role::Storage.as_str())).then(|| {
            let opt = |k: &str| m.driver_opts.get(k).map_or("", String::as_str);
            (
                m.source.clone(),
                format!("{} ({})", opt("device"), opt("o")),
            )
        })
    })
}

/// Whether `want` publishes ports and none that `seen` publishes. Its new
/// tasks can then start beside the old ones (host-mode ports in use cannot
/// be bound twice): a new port that cannot work fails only the new tasks,
/// the swarm rolls them back, and the old ones serve throughout.
fn ports_all_new(seen: &ServiceWant, want: &ServiceWant) -> bool {
    !want.ports.is_empty()
        && want
            .ports
            .iter()
            .all(|(p, _)| seen.ports.iter().all(|(q, _)| q != p))
}

fn mode_kind(mode: &Mode) -> &'static str {
    match mode {
        Mode::Replicated(_) => "replicated",
        Mode::Global => "global",
    }
}

/// The plan that takes `seen` to `want`.
pub fn diff(want: &Desired, seen: &Observed) -> Plan {
    let mut plan = Plan::default();
    let replace_network = network_step(want, seen, &mut plan);
    blob_steps(want, seen, &mut plan);
    service_steps(want, seen, replace_network, &mut plan);
    removal_steps(want, seen, &mut plan);
    plan.image_checks = want.server_images.iter().map(|i| i.image.clone()).collect();
    plan
}

/// The network made, or made anew (then true) when its options changed
/// and nothing else uses it; a problem when it cannot be.
fn network_step(want: &Desired, seen: &Observed, plan: &mut Plan) -> bool {
    let Some(net) = &seen.network else {
        plan.steps.push(Step::CreateNetwork(want.network.clone()));
        return false;
    };
    let why = network_differences(&want.network, net);
    if why.is_empty() {
        return false;
    }
    if !net.managed {
        plan.problems.push(format!(
            "network {} exists but was not made by hubgate deploy and differs ({}): remove it or name another network",
            net.name,
            why.join(", ")
        ));
        return false;
    }
    if !net.foreign_services.is_empty() {
        plan.problems.push(format!(
            "network {} must be made anew ({}), but services still use it: {} (stop those servers first)",
            net.name,
            why.join(", "),
            net.foreign_services.join(", ")
        ));
        return false;
    }
    plan.steps.push(Step::ReplaceNetwork {
        want: want.network.clone(),
        why,
    });
    true
}

/// New configs (with the hub settings a new hub configuration changes)
/// and secrets; a problem for an external secret that does not exist.
fn blob_steps(want: &Desired, seen: &Observed, plan: &mut Plan) {
    let have_configs: HashSet<&str> = seen.configs.iter().map(String::as_str).collect();
    for c in &want.configs {
        if !have_configs.contains(c.name.as_str()) {
            plan.steps.push(Step::CreateConfig(c.clone()));
            if let (Role::HubConfig, SecretData::Bytes(new), Some(old)) =
                (c.role, &c.data, &seen.hub_config)
            {
                plan.hub_settings = settings_changed(old, &String::from_utf8_lossy(new));
            }
        }
    }
    let have_secrets: HashSet<&str> = seen.secrets.iter().map(String::as_str).collect();
    let migrating = hub_data_step(want, seen, plan);
    for s in &want.secrets {
        match s.data {
            SecretData::External if !seen.all_secrets.contains(&s.name) => {
                plan.problems.push(format!(
                    "the Docker secret {} (auth.client_secret_secret) does not exist: make it with `docker secret create {} FILE`",
                    s.name, s.name
                ));
            }
            SecretData::External => {}
            // The move makes it from the old hub's.
            _ if migrating && s.role == Role::HubCookieSecret => {}
            _ if !have_secrets.contains(s.name.as_str()) => {
                plan.steps.push(Step::CreateSecret(s.clone()));
            }
            _ => {}
        }
    }
}

/// Services made or updated (every one made anew with a new network); a
/// problem for a port another service publishes.
fn service_steps(want: &Desired, seen: &Observed, replace_network: bool, plan: &mut Plan) {
    for s in &want.services {
        for (port, _) in &s.ports {
            for (_, other) in seen.foreign_ports.iter().filter(|(p, _)| p == port) {
                plan.problems.push(format!(
                    "proxy.http_port/https_port: port {port} is published by the service {other} already: choose another port, or remove that service"
                ));
            }
        }
        match seen.services.iter().find(|o| o.name == s.name) {
            Some(_) if replace_network => plan.steps.push(Step::CreateService(s.clone())),
            Some(o) if mode_kind(&o.mode) != mode_kind(&s.mode) => {
                plan.steps.push(Step::ReplaceService {
                    want: s.clone(),
                    why: format!(
                        "{} -> {}: the swarm cannot change a service's mode in place",
                        mode_kind(&o.mode),
                        mode_kind(&s.mode)
                    ),
                });
            }
            Some(o) => {
                let changes = service_changes(o, s);
                if !changes.is_empty() {
                    let mut want = s.clone();
                    want.start_first = s.start_first || ports_all_new(o, s);
                    plan.steps.push(Step::UpdateService { want, changes });
                }
            }
            None => plan.steps.push(Step::CreateService(s.clone())),
        }
    }
}

/// What the deployment no longer wants: services, configs, secrets,
/// volumes of another storage, networks of an old name.
fn removal_steps(want: &Desired, seen: &Observed, plan: &mut Plan) {
    let wanted: HashSet<&str> = want.services.iter().map(|s| s.name.as_str()).collect();
    for o in &seen.services {
        if !wanted.contains(o.name.as_str()) {
            plan.steps.push(Step::RemoveService(o.name.clone()));
        }
    }
    let want_configs: HashSet<&str> = want.configs.iter().map(|c| c.name.as_str()).collect();
    for c in &seen.configs {
        if !want_configs.contains(c.as_str()) && !seen.server_configs.contains(c) {
            plan.steps.push(Step::RemoveConfig(c.clone()));
        }
    }
    let want_secrets: HashSet<&str> = want.secrets.iter().map(|s| s.name.as_str()).collect();
    for s in &seen.secrets {
        if !want_secrets.contains(s.as_str()) {
            plan.steps.push(Step::RemoveSecret(s.clone()));
        }
    }
    plan.steps.extend(volume_step(want, seen));
    for n in &seen.old_networks {
        if *n != want.network.name {
            plan.steps.push(Step::RemoveNetwork(n.clone()));
        }
    }
}

/// The hub's database moved off an earlier hubgate's node-local volume
/// (true), or a problem when its node is down.
fn hub_data_step(want: &Desired, seen: &Observed, plan: &mut Plan) -> bool {
    let Some(old) = &seen.hub_data else {
        return false;
    };
    let hub = want
        .services
        .iter()
        .find(|s| s.labels.get(ROLE_LABEL).map(String::as_str) == Some(Role::Hub.as_str()));
    let storage = hub.and_then(|h| {
        h.mounts
            .iter()
            .find(|m| m.labels.get(ROLE_LABEL).map(String::as_str) == Some(Role::Storage.as_str()))
    });
    let (Some(hub), Some(storage)) = (hub, storage) else {
        return false;
    };
    if !old.node_ready {
        plan.problems.push(format!(
            "the hub's database is on the volume {} of {}, which is down: start that node again so apply can move the database onto the storage",
            old.volume, old.node
        ));
        return false;
    }
    let cookie_secret = want
        .secrets
        .iter()
        .find(|s| s.role == Role::HubCookieSecret)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    plan.steps.push(Step::MigrateHubData(HubDataMove {
        hub_service: hub.name.clone(),
        volume: old.volume.clone(),
        node_id: old.node_id.clone(),
        node: old.node.clone(),
        storage: storage.clone(),
        cookie_secret,
    }));
    true
}

mod display;

#[cfg(test)]
mod tests;
