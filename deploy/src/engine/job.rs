//! The one-off jobs `apply` and `destroy` run: hubgate's image as root with
//! the node's Docker socket, no health check (the image's asks a proxy that
//! does not run there), never restarted.

use std::collections::HashMap;

use bollard::models::{
    HealthConfig, Mount, MountType, ServiceSpec, ServiceSpecMode, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::DOCKER_SOCKET;
use crate::model::{DEPLOY_LABEL, ROLE_LABEL};

/// A job of deployment `deployment`: service `name` in `mode`, labelled
/// with `role`, running `image` with `args`, on the nodes `constraints`
/// allow, with the socket and `mounts`.
pub(super) struct Job<'a> {
    pub(super) deployment: &'a str,
    pub(super) name: &'a str,
    pub(super) role: &'a str,
    pub(super) image: &'a str,
    pub(super) args: Vec<String>,
    pub(super) mode: ServiceSpecMode,
    pub(super) constraints: Vec<String>,
    pub(super) mounts: Vec<Mount>,
}

impl Job<'_> {
    pub(super) fn spec(self) -> ServiceSpec {
        let mut mounts = vec![Mount {
            target: Some(DOCKER_SOCKET.to_owned()),
            source: Some(DOCKER_SOCKET.to_owned()),
            typ: Some(MountType::BIND),
            ..Default::default()
        }];
        mounts.extend(self.mounts);
        ServiceSpec {
            name: Some(self.name.to_owned()),
            labels: Some(HashMap::from([
                (DEPLOY_LABEL.to_owned(), self.deployment.to_owned()),
                (ROLE_LABEL.to_owned(), self.role.to_owned()),
            ])),
            mode: Some(self.mode),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image.to_owned()),
                    args: Some(self.args),
                    // The socket is root's (and its group's): these jobs alone.
                    user: Some("0:0".to_owned()),
                    mounts: Some(mounts),
                    health_check: Some(HealthConfig {
                        test: Some(vec!["NONE".to_owned()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                placement: (!self.constraints.is_empty()).then(|| TaskSpecPlacement {
                    constraints: Some(self.constraints),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
