//! Everything that talks to Docker: reading what a deployment has on the
//! engine, running a plan, waiting for it to converge, the swarm itself,
//! status and destroy.

mod apply;
mod converge;
mod destroy;
mod images;
mod job;
mod migrate;
mod observe;
mod service_spec;
mod status;
mod swarm;
mod volumes;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;

pub use apply::Progress;
pub use destroy::Removed;
pub use status::{NodeRow, ProxyRow, ServiceRow, Status, TaskRow};
pub use swarm::{Initialised, JoinTokens, SwarmRole, choose_advertise};
pub use volumes::Pruned;

use crate::DeployError;
use crate::model::DEPLOY_LABEL;

/// Timeout of one engine call, in seconds.
const TIMEOUT_SECS: u64 = 60;
/// The Docker socket on every node.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The swarm's nodes as `converge` and the jobs need them.
pub(crate) struct Nodes {
    /// Node IDs to host names.
    pub(crate) host_of: HashMap<String, String>,
    /// Managers that are ready and active.
    pub(crate) ready_managers: u64,
    /// IDs of the nodes that are ready and active.
    pub(crate) ready: std::collections::HashSet<String>,
}

/// A version-negotiated connection to one engine.
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Negotiates the API version with the engine `docker` (a client the
    /// binary made from `DOCKER_HOST`, named `host`) and checks it answers.
    pub async fn connect(docker: Docker, host: &str) -> Result<Self, DeployError> {
        let unreachable = |source| DeployError::Unreachable {
            host: host.to_owned(),
            source,
        };
        let docker = docker.with_timeout(Duration::from_secs(TIMEOUT_SECS));
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(Self {
            docker,
            host: host.to_owned(),
        })
    }

    /// The engine's address, as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }
}

impl Engine {
    /// The swarm's nodes: names, and how many can run tasks.
    pub(crate) async fn nodes(&self) -> Result<Nodes, DeployError> {
        use bollard::models::{NodeSpecAvailabilityEnum, NodeState};
        let nodes = self
            .docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(DeployError::engine("list nodes"))?;
        let usable = |n: &&bollard::models::Node| {
            n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY)
                && n.spec.as_ref().and_then(|s| s.availability)
                    == Some(NodeSpecAvailabilityEnum::ACTIVE)
        };
        Ok(Nodes {
            host_of: nodes
                .iter()
                .filter_map(|n| Some((n.id.clone()?, n.description.as_ref()?.hostname.clone()?)))
                .collect(),
            ready_managers: nodes
                .iter()
                .filter(usable)
                .filter(|n| n.manager_status.is_some())
                .count() as u64,
            ready: nodes
                .iter()
                .filter(usable)
                .filter_map(|n| n.id.clone())
                .collect(),
        })
    }
}

/// The filter that selects a deployment's objects.
fn deployment_filter(name: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{DEPLOY_LABEL}={name}")])])
}
