//! From a deployment file to the objects it wants: the network, the hub's
//! configuration (a Docker config), the secrets, the hub and hubgate
//! services. Pure: the bytes of files the deployment names come in as
//! `Inputs`, read by the caller.

mod hub_config;
mod layout;

use std::collections::BTreeMap;

use crate::file::{DeployFile, Replicas, Resources};
use crate::model::{
    BlobWant, DEPLOY_LABEL, FileRef, Mode, MountWant, NetworkWant, ROLE_LABEL, ResourcesWant, Role,
    SecretData, ServiceWant,
};
use crate::volumes::Keep;

use layout::*;
pub use layout::{API_PORT, CERTS_SUBDIR, HUB_PORT, HUBGATE_UID};

/// The user servers' jupyter_server configuration (no deployment values).
const SINGLEUSER_CONFIG: &str = include_str!("singleuser_config.py");

/// The bytes of the files a deployment names, read by the caller.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub oauth_client_secret: Option<Vec<u8>>,
    /// The dummy authenticator's shared password (`auth.password_file`).
    pub password: Option<Vec<u8>>,
    pub tls_cert: Option<Vec<u8>>,
    pub tls_key: Option<Vec<u8>>,
    pub acme_ca: Option<Vec<u8>>,
    /// The group of the managers' Docker socket.
    pub docker_gid: u32,
}

/// A directory to make on this machine before the services start (local
/// storage), owned by `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDir {
    pub path: String,
    pub uid: u32,
}

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
}

/// The first 12 hex digits of SHA-256: names immutable objects by content.
pub fn short_hash(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `local` driver options that mount `sub` of the storage.
fn storage_opts(f: &DeployFile, sub: &str) -> BTreeMap<String, String> {
    let join = |root: &str| {
        let root = root.trim_end_matches('/');
        if sub.is_empty() {
            root.to_owned()
        } else {
            format!("{root}/{sub}")
        }
    };
    let mut opts = BTreeMap::new();
    if let Some(nfs) = &f.storage.nfs {
        opts.insert("type".into(), "nfs".into());
        opts.insert("o".into(), format!("addr={},{}", nfs.server, nfs.options));
        opts.insert("device".into(), format!(":{}", join(&nfs.export)));
    } else if let Some(dir) = &f.storage.local {
        opts.insert("type".into(), "none".into());
        opts.insert("o".into(), "bind".into());
        opts.insert("device".into(), join(dir));
    }
    opts
}

fn labels(f: &DeployFile, role: Role) -> BTreeMap<String, String> {
    [
        (DEPLOY_LABEL.to_owned(), f.name.clone()),
        (ROLE_LABEL.to_owned(), role.as_str().to_owned()),
    ]
    .into()
}

/// Eight hex digits of a hash of volume driver options.
fn options_hash(opts: &BTreeMap<String, String>) -> String {
    let key: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    short_hash(key.join("\n").as_bytes())[..8].to_owned()
}

/// A volume carrying its storage options; named by them, since Docker
/// keeps a volume's first options for as long as it exists.
fn storage_mount(f: &DeployFile, role: Role, sub: &str, target: &str) -> MountWant {
    let driver_opts = storage_opts(f, sub);
    MountWant {
        bind: false,
        source: format!("{}-{role}-{}", f.name, options_hash(&driver_opts)),
        target: target.to_owned(),
        read_only: false,
        driver_opts,
        labels: labels(f, role),
    }
}

fn socket(read_only: bool) -> MountWant {
    MountWant {
        bind: true,
        source: DOCKER_SOCKET.to_owned(),
        target: DOCKER_SOCKET.to_owned(),
        read_only,
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

fn resources(r: &Resources) -> ResourcesWant {
    let cpu = |c: Option<f64>| c.map(|c| (c * 1e9).round() as i64);
    let mem = |m: Option<crate::file::Size>| m.map(|m| i64::try_from(m.0).unwrap_or(i64::MAX));
    ResourcesWant {
        cpu_limit: cpu(r.cpu_limit),
        memory_limit: mem(r.memory_limit),
        cpu_reservation: cpu(r.cpu_reservation),
        memory_reservation: mem(r.memory_reservation),
    }
}

fn blob(f: &DeployFile, role: Role, data: &[u8]) -> BlobWant {
    BlobWant {
        name: format!("{}-{role}-{}", f.name, short_hash(data)),
        data: SecretData::Bytes(data.to_vec()),
        role,
    }
}

/// What `f` wants, given the bytes of the files it names.
pub fn desired(f: &DeployFile, inputs: &Inputs) -> Result<Desired, crate::DeployError> {
    let missing = |what: &str| crate::DeployError::MissingInput(what.to_owned());
    let n = names(f);
    let user_volume_opts = storage_opts(f, "{username}");
    let storage_id = options_hash(&user_volume_opts);
    let user_volume = format!("{}-user-{storage_id}-{{username}}", f.name);
    let singleuser_config = blob(f, Role::SingleUserConfig, SINGLEUSER_CONFIG.as_bytes());
    let hub_config = hub_config::render(
        f,
        &hub_config::Volumes {
            name: &user_volume,
            options: &user_volume_opts,
            storage_id: &storage_id,
        },
        &singleuser_config.name,
    );

    let config = blob(f, Role::HubConfig, hub_config.as_bytes());
    let mut configs = vec![config.clone(), singleuser_config];
    let token = BlobWant {
        name: format!("{}-proxy-token", f.name),
        data: SecretData::Generated,
        role: Role::ProxyToken,
    };
    let mut secrets = vec![token.clone()];
    let file_ref = |b: &BlobWant, target: &str| FileRef {
        name: b.name.clone(),
        target: target.to_owned(),
    };

    // The hub.
    let mut hub_secrets = vec![file_ref(&token, PROXY_TOKEN_PATH)];
    // A secret made of a file's bytes, read by the hub at `path`.
    let mut from_file = |field: &str, bytes: Option<&[u8]>, role: Role, path: &str| {
        let secret = blob(f, role, bytes.ok_or_else(|| missing(field))?);
        hub_secrets.push(file_ref(&secret, path));
        secrets.push(secret);
        Ok::<_, crate::DeployError>(())
    };
    if f.auth.client_secret_file.is_some() {
        from_file(
            "auth.client_secret_file",
            inputs.oauth_client_secret.as_deref(),
            Role::OauthClientSecret,
            OAUTH_SECRET_PATH,
        )?;
    }
    if f.auth.password_file.is_some() {
        from_file(
            "auth.password_file",
            inputs.password.as_deref(),
            Role::DummyPassword,
            PASSWORD_PATH,
        )?;
    }
    if let Some(name) = &f.auth.client_secret_secret {
        let secret = BlobWant {
            name: name.clone(),
            data: SecretData::External,
            role: Role::OauthClientSecret,
        };
        hub_secrets.push(file_ref(&secret, OAUTH_SECRET_PATH));
        secrets.push(secret);
    }
    let mut hub_constraints = vec!["node.role==manager".to_owned()];
    if let Some(node) = &f.hub.node {
        hub_constraints.push(format!("node.hostname=={node}"));
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
    let hub = ServiceWant {
        name: n.hub.clone(),
        image: f.hub.image.clone(),
        args: vec![],
        env: BTreeMap::new(),
        labels: hub_labels,
        user: String::new(),
        mode: Mode::Replicated(1),
        constraints: hub_constraints,
        max_per_node: 0,
        mounts: vec![
            socket(false),
            hub_data,
            storage_mount(f, Role::Storage, "", STORAGE_DIR),
        ],
        secrets: hub_secrets,
        configs: vec![file_ref(&config, HUB_CONFIG_PATH)],
        ports: vec![],
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: resources(&f.hub.resources),
        start_first: false,
        update_delay_secs: 0,
        stop_grace_secs: 10,
    };

    // hubgate.
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--ip=0.0.0.0".into(),
        format!("--api-ip=0.0.0.0"),
        format!("--api-port={API_PORT}"),
        "--swarm".into(),
        format!("--swarm-network={}", f.network.name),
        format!("--error-target=http://{}:{HUB_PORT}/hub/error", n.hub),
        "--shutdown-grace=2".into(),
    ];
    if let Some(max) = f.proxy.max_upload {
        args.push(format!("--max-body-size={}", max.0));
    }
    let mut proxy_secrets = vec![file_ref(&token, PROXY_TOKEN_PATH)];
    let mut proxy_mounts = vec![socket(true)];
    let mut proxy_configs = vec![];
    let mut ports = vec![(f.proxy.http_port, HTTP_PORT)];
    let mut local_dirs = vec![];
    match &f.tls {
        None => args.push(format!("--port={HTTP_PORT}")),
        Some(tls) => {
            ports.push((f.proxy.https_port, HTTPS_PORT));
            args.push(format!("--port={HTTPS_PORT}"));
            args.push(format!("--redirect-port={HTTP_PORT}"));
            args.push(format!("--redirect-to={}", f.proxy.https_port));
            if let Some(email) = &tls.acme_email {
                args.push(format!("--acme-domain={}", f.hosts.join(",")));
                args.push(format!("--acme-email={email}"));
                args.push(format!("--acme-directory={}", tls.acme_directory));
                args.push(format!("--acme-challenge={}", tls.challenge));
                args.push(format!("--acme-storage={CERTS_DIR}/acme"));
                proxy_mounts.push(storage_mount(f, Role::Certs, CERTS_SUBDIR, CERTS_DIR));
                if let Some(dir) = &f.storage.local {
                    local_dirs.push(LocalDir {
                        path: format!("{}/{CERTS_SUBDIR}", dir.trim_end_matches('/')),
                        uid: HUBGATE_UID,
                    });
                }
                if tls.acme_ca_file.is_some() {
                    let ca = inputs
                        .acme_ca
                        .as_deref()
                        .ok_or_else(|| missing("tls.acme_ca_file"))?;
                    let ca = blob(f, Role::AcmeCa, ca);
                    args.push(format!("--acme-ca-file={ACME_CA_PATH}"));
                    proxy_configs.push(file_ref(&ca, ACME_CA_PATH));
                    configs.push(ca);
                }
            } else {
                let cert = inputs
                    .tls_cert
                    .as_deref()
                    .ok_or_else(|| missing("tls.cert_file"))?;
                let key = inputs
                    .tls_key
                    .as_deref()
                    .ok_or_else(|| missing("tls.key_file"))?;
                let (cert, key) = (blob(f, Role::TlsCert, cert), blob(f, Role::TlsKey, key));
                args.push(format!("--ssl-cert={TLS_CERT_PATH}"));
                args.push(format!("--ssl-key={TLS_KEY_PATH}"));
                proxy_secrets.push(file_ref(&cert, TLS_CERT_PATH));
                proxy_secrets.push(file_ref(&key, TLS_KEY_PATH));
                secrets.push(cert);
                secrets.push(key);
            }
        }
    }
    if let Some(dir) = &f.storage.local {
        local_dirs.insert(
            0,
            LocalDir {
                path: dir.clone(),
                uid: 0,
            },
        );
    }
    let (mode, max_per_node) = match f.proxy.replicas {
        Replicas::Managers => (Mode::Global, 0),
        Replicas::Count(n) => (Mode::Replicated(u64::from(n)), 1),
    };
    let hubgate = ServiceWant {
        name: n.hubgate.clone(),
        image: f.proxy.image.clone(),
        args,
        env: [(
            "CONFIGPROXY_AUTH_TOKEN_FILE".to_owned(),
            PROXY_TOKEN_PATH.to_owned(),
        )]
        .into(),
        labels: labels(f, Role::Hubgate),
        user: format!("{HUBGATE_UID}:{}", inputs.docker_gid),
        mode,
        constraints: vec!["node.role==manager".to_owned()],
        max_per_node,
        mounts: proxy_mounts,
        secrets: proxy_secrets,
        configs: proxy_configs,
        ports,
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: ResourcesWant::default(),
        start_first: false,
        update_delay_secs: 5,
        stop_grace_secs: 5,
    };

    let services = vec![hub, hubgate];
    let keep = Keep {
        names: services
            .iter()
            .flat_map(|s| {
                s.mounts
                    .iter()
                    .filter(|m| !m.bind)
                    .map(|m| m.source.clone())
            })
            .collect(),
        user_storage: Some(storage_id),
        roles: vec![],
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
    })
}

#[cfg(test)]
pub(crate) mod tests;
