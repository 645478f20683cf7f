//! Which of a deployment's volumes a node keeps. Docker volumes are per
//! node: a node that once ran a user's server keeps that volume, with the
//! options it was made with, and a manager cannot list or remove volumes on
//! other nodes. So the rule travels: `apply` and `destroy` run it on every
//! node as a one-off job (`hubgate deploy prune-volumes`), and `plan` runs
//! it on the volumes of the engine it talks to.

use std::collections::HashMap;

use crate::model::{ROLE_LABEL, Role, STORAGE_LABEL};

/// What a node keeps of a deployment's volumes; every other volume
/// labelled with the deployment goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Volumes the services mount now, by name.
    pub names: Vec<String>,
    /// User volumes of this storage (the `hubgate.deploy.storage` label).
    pub user_storage: Option<String>,
    /// Roles kept whatever their storage (`destroy` without `--purge`).
    pub roles: Vec<Role>,
}

impl Keep {
    /// Whether a volume named `name` with `labels` stays.
    pub fn keeps(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        let role = labels.get(ROLE_LABEL).and_then(|r| Role::from_label(r));
        self.names.iter().any(|n| n == name)
            || role.is_some_and(|role| self.roles.contains(&role))
            || (role == Some(Role::User)
                && self.user_storage.is_some()
                && labels.get(STORAGE_LABEL) == self.user_storage.as_ref())
    }

    /// The rule as `hubgate deploy prune-volumes` arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![];
        for n in &self.names {
            args.push(format!("--keep={n}"));
        }
        if let Some(s) = &self.user_storage {
            args.push(format!("--keep-storage={s}"));
        }
        for r in &self.roles {
            args.push(format!("--keep-role={r}"));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(role: Role, storage: Option<&str>) -> HashMap<String, String> {
        let mut l = HashMap::from([(ROLE_LABEL.to_owned(), role.to_string())]);
        if let Some(s) = storage {
            l.insert(STORAGE_LABEL.to_owned(), s.to_owned());
        }
        l
    }

    #[test]
    fn user_volumes_of_another_storage_go() {
        let keep = Keep {
            names: vec!["j-hub-data".into(), "j-storage-aaaa".into()],
            user_storage: Some("bbbb".into()),
            roles: vec![],
        };
        assert!(keep.keeps("j-user-bbbb-alice", &labels(Role::User, Some("bbbb"))));
        assert!(!keep.keeps("j-user-aaaa-alice", &labels(Role::User, Some("aaaa"))));
        // Made before volumes carried their storage: stale.
        assert!(!keep.keeps("jupyterhub-user-alice", &labels(Role::User, None)));
        assert!(keep.keeps("j-hub-data", &labels(Role::HubData, None)));
        assert!(!keep.keeps("j-storage-cccc", &labels(Role::Storage, None)));
        assert_eq!(
            keep.to_args(),
            [
                "--keep=j-hub-data",
                "--keep=j-storage-aaaa",
                "--keep-storage=bbbb"
            ]
        );
        // destroy without --purge: data stays; with it, nothing does.
        let destroy = Keep {
            roles: vec![Role::User, Role::HubData],
            ..Keep::default()
        };
        assert!(destroy.keeps("j-user-aaaa-alice", &labels(Role::User, Some("aaaa"))));
        assert!(!destroy.keeps("j-storage-aaaa", &labels(Role::Storage, None)));
        assert!(!Keep::default().keeps("j-hub-data", &labels(Role::HubData, None)));
    }
}
