//! The hub service: JupyterHub with its configuration, the secrets it
//! reads, its database volume and the whole storage.

use std::collections::BTreeMap;

use super::hub_config::HUB_MODULE_FILE;
use super::inputs::Inputs;
use super::layout::{
    HUB_CONFIG_PATH, HUB_DATA_DIR, HUB_MODULE_DIR, HUB_PORT, OAUTH_SECRET_PATH, PASSWORD_PATH,
    STORAGE_DIR, names,
};
use super::parts::{blob, file_ref, labels, resources, socket, storage_mount};
use crate::DeployError;
use crate::file::DeployFile;
use crate::model::{BlobWant, FileRef, Mode, MountWant, Role, SecretData, ServiceWant};

/// The hub's configuration files, as Docker configs.
pub(super) struct HubConfigs<'a> {
    /// The generated `jupyterhub_config.py`.
    pub(super) config: &'a BlobWant,
    /// hubgate's JupyterHub module.
    pub(super) module: &'a BlobWant,
}

/// The secrets the hub reads besides the proxy token: the OAuth client
/// secret and the trial password, from the files the deployment names or
/// (the client secret) a secret the operator made.
pub(super) fn secrets(
    f: &DeployFile,
    inputs: &Inputs,
) -> Result<Vec<(BlobWant, &'static str)>, DeployError> {
    let missing = |what: &str| DeployError::MissingInput(what.to_owned());
    let mut out = vec![];
    if f.auth.client_secret_file.is_some() {
        let bytes = inputs.oauth_client_secret.as_deref();
        let bytes = bytes.ok_or_else(|| missing("auth.client_secret_file"))?;
        out.push((blob(f, Role::OauthClientSecret, bytes), OAUTH_SECRET_PATH));
    }
    if f.auth.password_file.is_some() {
        let bytes = inputs.password.as_deref();
        let bytes = bytes.ok_or_else(|| missing("auth.password_file"))?;
        out.push((blob(f, Role::DummyPassword, bytes), PASSWORD_PATH));
    }
    if let Some(name) = &f.auth.client_secret_secret {
        let secret = BlobWant {
            name: name.clone(),
            data: SecretData::External,
            role: Role::OauthClientSecret,
        };
        out.push((secret, OAUTH_SECRET_PATH));
    }
    Ok(out)
}

/// The hub service; `secrets` are the files it reads, the proxy token's
/// among them.
pub(super) fn service(
    f: &DeployFile,
    configs: &HubConfigs<'_>,
    secrets: Vec<FileRef>,
) -> ServiceWant {
    let mut constraints = vec!["node.role==manager".to_owned()];
    if let Some(node) = &f.hub.node {
        constraints.push(format!("node.hostname=={node}"));
    }
    let mut hub_labels = labels(f, Role::Hub);
    for (k, v) in [
        ("hubgate.enable", "true".to_owned()),
        ("hubgate.port", HUB_PORT.to_string()),
        ("hubgate.path", "/".to_owned()),
    ] {
        hub_labels.insert(k.to_owned(), v);
    }
    let hub_data = MountWant {
        bind: false,
        source: format!("{}-hub-data", f.name),
        target: HUB_DATA_DIR.to_owned(),
        read_only: false,
        driver_opts: BTreeMap::new(),
        labels: labels(f, Role::HubData),
    };
    ServiceWant {
        name: names(f).hub,
        image: f.hub.image.clone(),
        args: vec![],
        env: BTreeMap::new(),
        labels: hub_labels,
        user: String::new(),
        mode: Mode::Replicated(1),
        constraints,
        max_per_node: 0,
        mounts: vec![
            socket(false),
            hub_data,
            storage_mount(f, Role::Storage, "", STORAGE_DIR),
        ],
        secrets,
        configs: vec![
            file_ref(configs.config, HUB_CONFIG_PATH),
            file_ref(
                configs.module,
                &format!("{HUB_MODULE_DIR}/{HUB_MODULE_FILE}"),
            ),
        ],
        ports: vec![],
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: resources(&f.hub.resources),
        start_first: false,
        update_delay_secs: 0,
        stop_grace_secs: 10,
    }
}

/// The proxy token: random bytes made once, shared by the hub and hubgate.
pub(super) fn proxy_token(f: &DeployFile) -> BlobWant {
    BlobWant {
        name: format!("{}-proxy-token", f.name),
        data: SecretData::Generated,
        role: Role::ProxyToken,
    }
}
