//! The pieces every service of a deployment is made of: labels, content
//! names, storage volumes and mounts, files from configs and secrets,
//! resource limits.

use std::collections::BTreeMap;

use super::layout::DOCKER_SOCKET;
use crate::file::{DeployFile, Nfs, Resources};
use crate::model::{
    BlobWant, DEPLOY_LABEL, FileRef, MountWant, ROLE_LABEL, ResourcesWant, Role, SecretData,
};

/// A directory to make on this machine before the services start (local
/// storage), owned by `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDir {
    pub path: String,
    pub uid: u32,
}

/// The first 12 hex digits of SHA-256: names immutable objects by content.
pub fn short_hash(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `local` driver options that mount `dir` of an NFS server.
pub(super) fn nfs_opts(nfs: &Nfs, dir: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("type".to_owned(), "nfs".to_owned()),
        (
            "o".to_owned(),
            format!("addr={},{}", nfs.server, nfs.options),
        ),
        ("device".to_owned(), format!(":{dir}")),
    ])
}

/// The `local` driver options that mount `sub` of the storage.
pub(super) fn storage_opts(f: &DeployFile, sub: &str) -> BTreeMap<String, String> {
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
        opts = nfs_opts(nfs, &join(&nfs.export));
    } else if let Some(dir) = &f.storage.local {
        opts.insert("type".into(), "none".into());
        opts.insert("o".into(), "bind".into());
        opts.insert("device".into(), join(dir));
    }
    opts
}

pub(super) fn labels(f: &DeployFile, role: Role) -> BTreeMap<String, String> {
    [
        (DEPLOY_LABEL.to_owned(), f.name.clone()),
        (ROLE_LABEL.to_owned(), role.as_str().to_owned()),
    ]
    .into()
}

/// Eight hex digits of a hash of volume driver options.
pub(super) fn options_hash(opts: &BTreeMap<String, String>) -> String {
    let key: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    short_hash(key.join("\n").as_bytes())[..8].to_owned()
}

/// A volume carrying its storage options; named by them, since Docker
/// keeps a volume's first options for as long as it exists.
pub(super) fn storage_mount(f: &DeployFile, role: Role, sub: &str, target: &str) -> MountWant {
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

pub(super) fn socket(read_only: bool) -> MountWant {
    MountWant {
        bind: true,
        source: DOCKER_SOCKET.to_owned(),
        target: DOCKER_SOCKET.to_owned(),
        read_only,
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

pub(super) fn resources(r: &Resources) -> ResourcesWant {
    let cpu = |c: Option<f64>| c.map(|c| (c * 1e9).round() as i64);
    let mem = |m: Option<crate::file::Size>| m.map(|m| i64::try_from(m.0).unwrap_or(i64::MAX));
    ResourcesWant {
        cpu_limit: cpu(r.cpu_limit),
        memory_limit: mem(r.memory_limit),
        cpu_reservation: cpu(r.cpu_reservation),
        memory_reservation: mem(r.memory_reservation),
    }
}

pub(super) fn blob(f: &DeployFile, role: Role, data: &[u8]) -> BlobWant {
    BlobWant {
        name: format!("{}-{role}-{}", f.name, short_hash(data)),
        data: SecretData::Bytes(data.to_vec()),
        role,
    }
}

/// A config's or secret's file at `target` in a service's containers.
pub(super) fn file_ref(b: &BlobWant, target: &str) -> FileRef {
    FileRef {
        name: b.name.clone(),
        target: target.to_owned(),
    }
}
