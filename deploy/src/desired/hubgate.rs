//! The hubgate service: its flags, the TLS objects it reads (a fixed
//! certificate, or ACME with its certificate store on the storage), the
//! published ports.

use std::collections::BTreeMap;

use super::inputs::Inputs;
use super::layout::{
    ACME_CA_PATH, API_PORT, CERTS_DIR, CERTS_SUBDIR, GUARD_DISCOVERY_SOCKET, HTTP_PORT, HTTPS_PORT,
    HUB_PORT, HUBGATE_UID, PROXY_TOKEN_PATH, TLS_CERT_PATH, TLS_KEY_PATH, names,
};
use super::parts::{LocalDir, blob, file_ref, labels, storage_mount};
use crate::DeployError;
use crate::file::{DeployFile, Replicas, Tls};
use crate::model::{BlobWant, FileRef, Mode, MountWant, ResourcesWant, Role, ServiceWant};

/// The hubgate service and the objects only it needs.
pub(super) struct Hubgate {
    pub(super) service: ServiceWant,
    pub(super) configs: Vec<BlobWant>,
    pub(super) secrets: Vec<BlobWant>,
    /// Directories to make on this machine (the certificate store on a
    /// local storage).
    pub(super) local_dirs: Vec<LocalDir>,
}

/// What serving TLS adds to hubgate.
#[derive(Default)]
struct TlsParts {
    args: Vec<String>,
    mounts: Vec<MountWant>,
    configs: Vec<(BlobWant, &'static str)>,
    secrets: Vec<(BlobWant, &'static str)>,
    local_dirs: Vec<LocalDir>,
}

/// hubgate for `f`, reading the proxy token `token`; its discovery reaches
/// the engine through the guard's socket in `discovery` only.
pub(super) fn hubgate(
    f: &DeployFile,
    inputs: &Inputs,
    token: &BlobWant,
    discovery: MountWant,
) -> Result<Hubgate, DeployError> {
    let mut args = base_args(f);
    let mut ports = vec![(f.proxy.http_port, HTTP_PORT)];
    let tls = match &f.tls {
        None => {
            args.push(format!("--port={HTTP_PORT}"));
            TlsParts::default()
        }
        Some(tls) => {
            ports.push((f.proxy.https_port, HTTPS_PORT));
            tls_parts(f, tls, inputs)?
        }
    };
    args.extend(tls.args);
    let mut mounts = vec![discovery];
    mounts.extend(tls.mounts);
    let refs = |objects: &[(BlobWant, &str)]| -> Vec<FileRef> {
        objects.iter().map(|(b, path)| file_ref(b, path)).collect()
    };
    let mut secrets = vec![file_ref(token, PROXY_TOKEN_PATH)];
    secrets.extend(refs(&tls.secrets));
    let (mode, max_per_node) = match f.proxy.replicas {
        Replicas::Managers => (Mode::Global, 0),
        Replicas::Count(n) => (Mode::Replicated(u64::from(n)), 1),
    };
    let service = ServiceWant {
        name: names(f).hubgate,
        image: f.proxy.image.clone(),
        command: vec![],
        spec_hash: false,
        args,
        env: BTreeMap::from([
            (
                "CONFIGPROXY_AUTH_TOKEN_FILE".to_owned(),
                PROXY_TOKEN_PATH.to_owned(),
            ),
            (
                "DOCKER_HOST".to_owned(),
                format!("unix://{GUARD_DISCOVERY_SOCKET}"),
            ),
        ]),
        labels: labels(f, Role::Hubgate),
        // Not in the engine socket's group: it holds no socket of Docker.
        user: format!("{HUBGATE_UID}:{HUBGATE_UID}"),
        mode,
        constraints: vec!["node.role==manager".to_owned()],
        max_per_node,
        mounts,
        secrets,
        configs: refs(&tls.configs),
        ports,
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: ResourcesWant::default(),
        start_first: false,
        update_delay_secs: 5,
        stop_grace_secs: 5,
        capabilities: vec![],
        healthcheck: vec![],
    };
    Ok(Hubgate {
        service,
        configs: tls.configs.into_iter().map(|(b, _)| b).collect(),
        secrets: tls.secrets.into_iter().map(|(b, _)| b).collect(),
        local_dirs: tls.local_dirs,
    })
}

/// The flags every deployment's hubgate runs with.
fn base_args(f: &DeployFile) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--ip=0.0.0.0".into(),
        "--api-ip=0.0.0.0".into(),
        format!("--api-port={API_PORT}"),
        "--swarm".into(),
        format!("--swarm-network={}", f.network.name),
        format!(
            "--error-target=http://{}:{HUB_PORT}/hub/error",
            names(f).hub
        ),
        "--shutdown-grace=2".into(),
    ];
    if let Some(max) = f.proxy.max_upload {
        args.push(format!("--max-body-size={}", max.0));
    }
    args
}

/// HTTPS with a redirect from HTTP, and the certificate: from ACME or
/// from the files the deployment names.
fn tls_parts(f: &DeployFile, tls: &Tls, inputs: &Inputs) -> Result<TlsParts, DeployError> {
    let missing = |what: &str| DeployError::MissingInput(what.to_owned());
    let mut parts = TlsParts {
        args: vec![
            format!("--port={HTTPS_PORT}"),
            format!("--redirect-port={HTTP_PORT}"),
            format!("--redirect-to={}", f.proxy.https_port),
        ],
        ..TlsParts::default()
    };
    let Some(email) = &tls.acme_email else {
        let cert = inputs
            .tls_cert
            .as_deref()
            .ok_or_else(|| missing("tls.cert_file"))?;
        let key = inputs
            .tls_key
            .as_deref()
            .ok_or_else(|| missing("tls.key_file"))?;
        parts.args.push(format!("--ssl-cert={TLS_CERT_PATH}"));
        parts.args.push(format!("--ssl-key={TLS_KEY_PATH}"));
        parts
            .secrets
            .push((blob(f, Role::TlsCert, cert), TLS_CERT_PATH));
        parts
            .secrets
            .push((blob(f, Role::TlsKey, key), TLS_KEY_PATH));
        return Ok(parts);
    };
    parts.args.extend([
        format!("--acme-domain={}", f.hosts.join(",")),
        format!("--acme-email={email}"),
        format!("--acme-directory={}", tls.acme_directory),
        format!("--acme-challenge={}", tls.challenge),
        format!("--acme-storage={CERTS_DIR}/acme"),
    ]);
    parts
        .mounts
        .push(storage_mount(f, Role::Certs, CERTS_SUBDIR, CERTS_DIR));
    if let Some(dir) = &f.storage.local {
        parts.local_dirs.push(LocalDir {
            path: format!("{}/{CERTS_SUBDIR}", dir.trim_end_matches('/')),
            uid: HUBGATE_UID,
        });
    }
    if tls.acme_ca_file.is_some() {
        let ca = inputs
            .acme_ca
            .as_deref()
            .ok_or_else(|| missing("tls.acme_ca_file"))?;
        parts.args.push(format!("--acme-ca-file={ACME_CA_PATH}"));
        parts
            .configs
            .push((blob(f, Role::AcmeCa, ca), ACME_CA_PATH));
    }
    Ok(parts)
}
