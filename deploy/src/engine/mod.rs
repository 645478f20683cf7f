//! Everything that talks to Docker: reading what a deployment has on the
//! engine, running a plan, waiting for it to converge, the swarm itself,
//! status and destroy.

mod apply;
mod converge;
mod destroy;
mod observe;
mod status;
mod swarm;

use std::collections::HashMap;

use bollard::Docker;

pub use apply::Progress;
pub use destroy::Removed;
pub use status::{NodeRow, ProxyRow, ServiceRow, Status, TaskRow};
pub use swarm::{Initialised, JoinTokens, SwarmRole, choose_advertise};

use crate::DeployError;
use crate::spec::DEPLOY_LABEL;

/// Timeout of one engine call, in seconds.
const TIMEOUT_SECS: u64 = 60;

/// A version-negotiated connection to one engine.
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Connects to `host` (`unix:///path`, `tcp://addr:port`; `None`: the
    /// default socket) and negotiates the API version.
    pub async fn connect(host: Option<&str>) -> Result<Self, DeployError> {
        let version = bollard::API_DEFAULT_VERSION;
        let name = host.unwrap_or("unix:///var/run/docker.sock").to_owned();
        let unreachable = |source| DeployError::Unreachable {
            host: name.clone(),
            source,
        };
        let docker = match host {
            None => Docker::connect_with_unix("/var/run/docker.sock", TIMEOUT_SECS, version),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                Docker::connect_with_unix(h, TIMEOUT_SECS, version)
            }
            Some(h) => Docker::connect_with_http(h, TIMEOUT_SECS, version),
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(Self { docker, host: name })
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

/// The filter that selects a deployment's objects.
fn deployment_filter(name: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{DEPLOY_LABEL}={name}")])])
}
