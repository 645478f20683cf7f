//! The hub service: JupyterHub behind its lease entrypoint on every
//! manager, with its configuration, the secrets it reads and the whole
//! storage (its database and lease among it).

use std::collections::BTreeMap;

use super::hub_config::{HUB_LEASE_FILE, HUB_MODULE_FILE, HUB_SPAWNER_FILE};
use super::inputs::Inputs;
use super::layout::{
    API_PORT, COOKIE_SECRET_PATH, CRYPT_KEY_PATH, DB_PASSWORD_PATH, GUARD_SPAWNER_SOCKET,
    HUB_CONFIG_PATH, HUB_MODULE_DIR, HUB_PORT, HUB_STATE_DIR, OAUTH_SECRET_PATH, PASSWORD_PATH,
    STORAGE_DIR, names,
};
use super::parts::{blob, file_ref, labels, resources, storage_mount};
use crate::DeployError;
use crate::file::DeployFile;
use crate::model::{BlobWant, FileRef, Mode, MountWant, Role, SecretData, ServiceWant};

/// The hub's configuration files, as Docker configs.
pub(super) struct HubConfigs<'a> {
    /// The generated `jupyterhub_config.py`.
    pub(super) config: &'a BlobWant,
    /// hubgate's JupyterHub module, and its spawner's.
    pub(super) module: &'a BlobWant,
    pub(super) spawner: &'a BlobWant,
    /// The lease entrypoint.
    pub(super) lease: &'a BlobWant,
}

/// The secrets the hub reads besides the proxy token: the OAuth client
/// secret, the trial password and the database's password, from the files
/// the deployment names or (the client secret) a secret the operator made.
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
    if f.hub
        .database
        .as_ref()
        .is_some_and(|d| d.password_file.is_some())
    {
        let bytes = inputs.db_password.as_deref();
        let bytes = bytes.ok_or_else(|| missing("hub.database.password_file"))?;
        out.push((blob(f, Role::HubDbPassword, bytes), DB_PASSWORD_PATH));
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

/// Seconds of the hub's lease (`hubgate_lease.py`): renewed every
/// `RENEW`; JupyterHub stopped `TERM` and killed `KILL` after the last
/// renewal that went through; taken over by a standby once unrenewed for
/// `TTL`, or `HANDOFF` after a release by a task of the same spec.
const LEASE_RENEW_SECS: u32 = 1;
const LEASE_TTL_SECS: u32 = 10;
const LEASE_TERM_SECS: u32 = 5;
const LEASE_KILL_SECS: u32 = 8;
const LEASE_HANDOFF_SECS: u32 = 3;
/// Seconds JupyterHub has to stop when its task stops (within the task's
/// stop grace, which leaves time to release the lease).
const HUB_STOP_SECS: u32 = 6;

/// The hub service: a task on every manager (or on `hub.node`), each
/// running hubgate's lease entrypoint; the one holding the lease runs
/// JupyterHub, and hubgate routes only to a task whose `/hub/health`
/// answers. `secrets` are the files it reads, the proxy token's among
/// them; `guard` is the volume of its guarded Docker socket (it holds no
/// other).
pub(super) fn service(
    f: &DeployFile,
    configs: &HubConfigs<'_>,
    secrets: Vec<FileRef>,
    guard: MountWant,
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
        // Standbys listen on nothing: only the task that serves is routed.
        ("hubgate.health.path", "/hub/health".to_owned()),
        ("hubgate.health.interval", "1s".to_owned()),
        ("hubgate.health.timeout", "1s".to_owned()),
    ] {
        hub_labels.insert(k.to_owned(), v);
    }
    ServiceWant {
        name: names(f).hub,
        image: f.hub.image.clone(),
        command: lease_command(f),
        args: vec![],
        env: BTreeMap::from([
            (
                "HUBGATE_HOLDER".to_owned(),
                "{{.Node.Hostname}}/{{.Task.Name}}".to_owned(),
            ),
            // docker-py (SwarmSpawner) reaches the engine through the guard.
            (
                "DOCKER_HOST".to_owned(),
                format!("unix://{GUARD_SPAWNER_SOCKET}"),
            ),
        ]),
        labels: hub_labels,
        user: String::new(),
        mode: Mode::Global,
        constraints,
        max_per_node: 0,
        mounts: vec![guard, storage_mount(f, Role::Storage, "", STORAGE_DIR)],
        secrets,
        configs: vec![
            file_ref(configs.config, HUB_CONFIG_PATH),
            file_ref(configs.module, &module_path(HUB_MODULE_FILE)),
            file_ref(configs.spawner, &module_path(HUB_SPAWNER_FILE)),
            file_ref(configs.lease, &module_path(HUB_LEASE_FILE)),
        ],
        ports: vec![],
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: resources(&f.hub.resources),
        // A new task starts as a standby beside the old one, and takes the
        // lease at once when the old one releases it.
        start_first: true,
        // Which tasks run the same hub: a release hands the lease to a
        // task of a new spec first.
        spec_hash: true,
        update_delay_secs: 0,
        stop_grace_secs: u64::from(HUB_STOP_SECS + 4),
        capabilities: vec![],
        healthcheck: vec![],
    }
}

fn module_path(file: &str) -> String {
    format!("{HUB_MODULE_DIR}/{file}")
}

/// The lease entrypoint's command line, JupyterHub's after `--`. The
/// lease is kept beside the hub's database: a sqlite file on the storage,
/// or a table in its PostgreSQL database.
fn lease_command(f: &DeployFile) -> Vec<String> {
    let mut command: Vec<String> = vec!["python3".into(), module_path(HUB_LEASE_FILE)];
    match &f.hub.database {
        Some(db) => {
            command.extend(["--store".into(), db.url.clone()]);
            if db.password_file.is_some() {
                command.extend(["--password-file".into(), DB_PASSWORD_PATH.into()]);
            }
        }
        None => command.extend([
            "--store".into(),
            format!("sqlite:///{HUB_STATE_DIR}/lease.sqlite"),
        ]),
    }
    // A standby takes the lease only while it reaches hubgate's tasks
    // across the overlay (a node whose links are down could neither be
    // routed to nor update routes).
    command.extend(["--peers".into(), format!("{}:{API_PORT}", names(f).hubgate)]);
    // The node's engine, as the hub reaches it: through the guard.
    command.extend(["--docker-socket".into(), GUARD_SPAWNER_SOCKET.into()]);
    for (flag, secs) in [
        ("--renew", LEASE_RENEW_SECS),
        ("--ttl", LEASE_TTL_SECS),
        ("--term", LEASE_TERM_SECS),
        ("--kill", LEASE_KILL_SECS),
        ("--handoff", LEASE_HANDOFF_SECS),
        ("--grace", HUB_STOP_SECS),
    ] {
        command.extend([flag.to_owned(), secs.to_string()]);
    }
    command.extend(["--", "jupyterhub", "-f", HUB_CONFIG_PATH].map(String::from));
    command
}

/// JupyterHub's own secrets, random bytes made once and kept: the cookie
/// secret (sessions survive a restart or a failover) and the key that
/// encrypts auth state.
pub(super) fn hub_secrets(f: &DeployFile) -> [(BlobWant, &'static str); 2] {
    let generated = |role: Role| BlobWant {
        name: format!("{}-{role}", f.name),
        data: SecretData::Generated,
        role,
    };
    [
        (generated(Role::HubCookieSecret), COOKIE_SECRET_PATH),
        (generated(Role::HubCryptKey), CRYPT_KEY_PATH),
    ]
}

/// The proxy token: random bytes made once, shared by the hub and hubgate.
pub(super) fn proxy_token(f: &DeployFile) -> BlobWant {
    BlobWant {
        name: format!("{}-proxy-token", f.name),
        data: SecretData::Generated,
        role: Role::ProxyToken,
    }
}
