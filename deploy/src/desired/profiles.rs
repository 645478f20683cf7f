//! The kinds of user server a deployment offers: each profile resolved
//! against `[singleuser]` (its image, resources and placement unless the
//! profile names its own), or the one server `[singleuser]` describes.

use std::collections::BTreeMap;

use crate::file::{Profile, Resources, SingleUser};

/// One kind of user server, as the hub starts it and the guard allows it.
pub(super) struct ServerKind<'a> {
    /// None: no profiles, the server `[singleuser]` describes.
    pub(super) profile: Option<&'a Profile>,
    pub(super) image: &'a str,
    pub(super) resources: &'a Resources,
    /// `singleuser.constraints`, then the profile's.
    pub(super) constraints: Vec<String>,
    pub(super) generic: BTreeMap<String, u64>,
}

/// Every kind of server, in the file's order.
pub(super) fn server_kinds(s: &SingleUser) -> Vec<ServerKind<'_>> {
    if s.profiles.is_empty() {
        return vec![ServerKind {
            profile: None,
            image: &s.image,
            resources: &s.resources,
            constraints: s.constraints.clone(),
            generic: BTreeMap::new(),
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
        })
        .collect()
}
