//! The one-off jobs `apply` and `destroy` run: hubgate's image as root with
//! the node's Docker socket (`Job`), or a user server image's `true` (the
//! image check); each with no health check (hubgate's image's asks a proxy
//! that does not run there) and never restarted (`one_off`).

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
        let container = TaskSpecContainerSpec {
            image: Some(self.image.to_owned()),
            args: Some(self.args),
            // The socket is root's (and its group's): these jobs alone.
            user: Some("0:0".to_owned()),
            mounts: Some(mounts),
            ..Default::default()
        };
        one_off(
            self.deployment,
            self.name,
            self.role,
            self.mode,
            container,
            self.constraints,
        )
    }
}

/// A one-off service of deployment `deployment`: `container` in `mode` on
/// the nodes `constraints` allow, labelled with `role`, with no health
/// check and never restarted.
pub(super) fn one_off(
    deployment: &str,
    name: &str,
    role: &str,
    mode: ServiceSpecMode,
    container: TaskSpecContainerSpec,
    constraints: Vec<String>,
) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([
            (DEPLOY_LABEL.to_owned(), deployment.to_owned()),
            (ROLE_LABEL.to_owned(), role.to_owned()),
        ])),
        mode: Some(mode),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                health_check: Some(HealthConfig {
                    test: Some(vec!["NONE".to_owned()]),
                    ..Default::default()
                }),
                ..container
            }),
            placement: (!constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(constraints),
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
