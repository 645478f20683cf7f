//! From a deployment file to the objects it wants: the network, the hub's
//! configuration (Docker configs: the generated values and hubgate's
//! JupyterHub module), the user servers' jupyter_server configuration, the
//! secrets, the hub and hubgate services. Pure: the bytes of files the
//! deployment names come in as `Inputs`, read by the caller.

mod extras;
mod guard;
mod hub;
mod hub_config;
mod hubgate;
mod inputs;
mod layout;
mod metadata;
mod parts;
mod profiles;
mod python;

use std::collections::BTreeMap;

use crate::DeployError;
use crate::file::DeployFile;
use crate::model::{BlobWant, NetworkWant, Role, ServerImage, ServiceWant};
use crate::volumes::Keep;

pub use hub_config::hub_settings;
use hub_config::{HUB_LEASE, HUB_MODULE, HUB_SPAWNER};
pub use inputs::Inputs;
pub use layout::{API_PORT, CERTS_SUBDIR, HUB_PORT, HUB_STATE_SUBDIR, HUBGATE_UID};
pub use parts::{LocalDir, short_hash};
use parts::{blob, file_ref, options_hash, storage_opts};

/// The user servers' jupyter_server configuration (no deployment values).
const SINGLEUSER_CONFIG: &str = include_str!("singleuser_config.py");

/// Everything a deployment wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub network: NetworkWant,
    pub configs: Vec<BlobWant>,
    pub secrets: Vec<BlobWant>,
    pub services: Vec<ServiceWant>,
    pub local_dirs: Vec<LocalDir>,
    /// Driver options of the per-user volumes (`{username}` in place).
    pub user_volume_opts: BTreeMap<String, String>,
    /// The user volumes' name, `{username}` in place: it carries a hash of
    /// the storage's options, so a storage that moved gets new volumes on
    /// every node (Docker would reuse an old one by name, old options and
    /// all).
    pub user_volume: String,
    /// The volumes every node keeps; the others go (`volumes`).
    pub keep: Keep,
    /// The image of the one-off jobs that run on every node (hubgate's).
    pub tool_image: String,
    /// The hub's database and lease are sqlite files on the storage (not
    /// PostgreSQL).
    pub hub_db_on_storage: bool,
    /// The images user servers run, each with its servers' placement.
    pub server_images: Vec<ServerImage>,
}

/// What `f` wants, given the bytes of the files it names.
pub fn desired(f: &DeployFile, inputs: &Inputs) -> Result<Desired, DeployError> {
    let user_volume_opts = storage_opts(f, "{username}");
    let storage_id = options_hash(&user_volume_opts);
    let user_volume = format!("{}-user-{storage_id}-{{username}}", f.name);
    let singleuser_config = blob(f, Role::SingleUserConfig, SINGLEUSER_CONFIG.as_bytes());
    let volumes = hub_config::Volumes {
        name: &user_volume,
        options: &user_volume_opts,
        storage_id: &storage_id,
    };
    let extras = extras::extras(f, inputs)?;
    let text = hub_config::render(f, &volumes, &singleuser_config.name, &extras.values)?;
    let config = blob(f, Role::HubConfig, text.as_bytes());
    let module = blob(f, Role::HubModule, HUB_MODULE.as_bytes());
    let lease = blob(f, Role::HubLease, HUB_LEASE.as_bytes());
    let spawner = blob(f, Role::HubSpawner, HUB_SPAWNER.as_bytes());

    let token = hub::proxy_token(f);
    let mut hub_secrets = hub::secrets(f, inputs)?;
    hub_secrets.extend(hub::hub_secrets(f));
    let mut hub_refs = vec![file_ref(&token, layout::PROXY_TOKEN_PATH)];
    hub_refs.extend(hub_secrets.iter().map(|(b, path)| file_ref(b, path)));
    let configs = hub::HubConfigs {
        config: &config,
        module: &module,
        spawner: &spawner,
        lease: &lease,
    };
    let guard = guard::guard(f, &volumes, &singleuser_config.name);
    hub_refs.extend(extras.hub_secrets);
    let mut hub = hub::service(f, &configs, hub_refs, guard.spawner_mount.clone());
    hub.configs.extend(extras.hub_configs);
    let hubgate = hubgate::hubgate(f, inputs, &token, guard.discovery_mount)?;

    let mut local_dirs: Vec<LocalDir> = f
        .storage
        .local
        .iter()
        .map(|dir| LocalDir {
            path: dir.clone(),
            uid: 0,
        })
        .collect();
    local_dirs.extend(hubgate.local_dirs);
    let data = profiles::data_volumes(f);
    // A shared directory of a local storage is made, owned by the
    // servers' uid (a read-write group space must be theirs to write).
    if let Some(dir) = &f.storage.local {
        let mounts = f.singleuser.mounts.iter();
        let paths = mounts.chain(f.singleuser.profiles.iter().flat_map(|p| &p.mounts));
        for path in paths.filter_map(|m| m.path.as_deref()) {
            let path = format!("{}/{path}", dir.trim_end_matches('/'));
            if !local_dirs.iter().any(|d| d.path == path) {
                local_dirs.push(LocalDir {
                    path,
                    uid: f.singleuser.uid,
                });
            }
        }
    }
    let mut secrets = vec![token];
    secrets.extend(hub_secrets.into_iter().map(|(b, _)| b));
    secrets.extend(hubgate.secrets);
    secrets.extend(extras.secrets);
    let mut configs = vec![config, module, spawner, lease, singleuser_config];
    configs.push(guard.config);
    configs.extend(extras.configs);
    configs.extend(hubgate.configs);
    let mut services = vec![hub, hubgate.service, guard.service];
    services.extend(metadata::service(f));
    services.extend(metadata::anchor(f));
    services.extend(extras.services);
    let mut names = volume_names(&services);
    names.extend(data.into_iter().map(|d| d.source));
    let keep = Keep {
        names,
        user_storage: Some(storage_id),
        // The hub's database from before it moved to the storage: left
        // where it is (its copy is on the storage).
        roles: vec![Role::HubData],
    };
    Ok(Desired {
        name: f.name.clone(),
        network: NetworkWant {
            name: f.network.name.clone(),
            subnet: f.network.subnet.clone(),
            encrypted: f.network.encrypted,
        },
        configs,
        secrets,
        services,
        local_dirs,
        user_volume_opts,
        user_volume,
        keep,
        tool_image: f.proxy.image.clone(),
        hub_db_on_storage: f.hub.database.is_none(),
        server_images: profiles::server_images(f),
    })
}

/// The named volumes `services` mount.
fn volume_names(services: &[ServiceWant]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| {
            s.mounts
                .iter()
                .filter(|m| !m.bind)
                .map(|m| m.source.clone())
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
