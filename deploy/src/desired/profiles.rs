//! The kinds of user server a deployment offers: each profile resolved
//! against `[singleuser]` (its image, resources and placement unless the
//! profile names its own, and the shared data of both), or the one server
//! `[singleuser]` describes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::parts::{labels, nfs_opts, options_hash, storage_opts};
use crate::file::{DataMount, DeployFile, Profile, Resources};
use crate::model::Role;

/// One kind of user server, as the hub starts it and the guard allows it.
pub(super) struct ServerKind<'a> {
    /// None: no profiles, the server `[singleuser]` describes.
    pub(super) profile: Option<&'a Profile>,
    pub(super) image: &'a str,
    pub(super) resources: &'a Resources,
    /// `singleuser.constraints`, then the profile's.
    pub(super) constraints: Vec<String>,
    pub(super) generic: BTreeMap<String, u64>,
    /// `singleuser.mounts`, then the profile's.
    pub(super) mounts: Vec<DataVolume>,
}

/// A shared data volume: the local driver's options travel in the mount,
/// so it appears on whichever node runs the server. Named by its options
/// (Docker keeps a volume's first options while it exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct DataVolume {
    pub(super) source: String,
    pub(super) target: String,
    pub(super) read_only: bool,
    pub(super) driver: &'static str,
    pub(super) options: BTreeMap<String, String>,
    pub(super) labels: BTreeMap<String, String>,
}

/// Every kind of server, in the file's order.
pub(super) fn server_kinds(f: &DeployFile) -> Vec<ServerKind<'_>> {
    let s = &f.singleuser;
    let shared: Vec<DataVolume> = s.mounts.iter().map(|m| data_volume(f, m)).collect();
    if s.profiles.is_empty() {
        return vec![ServerKind {
            profile: None,
            image: &s.image,
            resources: &s.resources,
            constraints: s.constraints.clone(),
            generic: BTreeMap::new(),
            mounts: shared,
        }];
    }
    s.profiles
        .iter()
        .map(|p| ServerKind {
            profile: Some(p),
            image: p.image.as_deref().unwrap_or(&s.image),
            resources: p.resources.as_ref().unwrap_or(&s.resources),
            constraints: s
                .constraints
                .iter()
                .chain(&p.constraints)
                .cloned()
                .collect(),
            generic: p.generic_resources.clone(),
            mounts: shared
                .iter()
                .cloned()
                .chain(p.mounts.iter().map(|m| data_volume(f, m)))
                .collect(),
        })
        .collect()
}

/// Every data volume any server mounts, once each.
pub(super) fn data_volumes(f: &DeployFile) -> Vec<DataVolume> {
    let mut all: Vec<DataVolume> = vec![];
    for kind in server_kinds(f) {
        for m in kind.mounts {
            if !all.iter().any(|a| a.source == m.source) {
                all.push(m);
            }
        }
    }
    all
}

fn data_volume(f: &DeployFile, m: &DataMount) -> DataVolume {
    let options = match (&m.nfs, &m.path) {
        (Some(nfs), _) => nfs_opts(nfs, &nfs.export),
        (None, path) => storage_opts(f, path.as_deref().unwrap_or_default()),
    };
    DataVolume {
        source: format!("{}-data-{}", f.name, options_hash(&options)),
        target: m.target.clone(),
        read_only: m.read_only,
        driver: "local",
        options,
        labels: labels(f, Role::Data),
    }
}

/// Each image user servers run, with the placement of its servers (once
/// each): what `apply` looks for on the nodes.
pub(super) fn server_images(f: &DeployFile) -> Vec<crate::model::ServerImage> {
    let mut all: Vec<crate::model::ServerImage> = vec![];
    for kind in server_kinds(f) {
        let image = crate::model::ServerImage {
            image: kind.image.to_owned(),
            constraints: kind.constraints,
        };
        if !all.contains(&image) {
            all.push(image);
        }
    }
    all
}
