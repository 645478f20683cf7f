//! The deploy library's errors.

use thiserror::Error;

/// What can go wrong while reading, planning or applying a deployment.
#[derive(Debug, Error)]
pub enum DeployError {
    /// The deployment file is invalid.
    #[error("{}{}: {message}", line.map_or(String::new(), |l| format!("line {l}")), field.as_ref().map_or(String::new(), |f| format!("{}field {f}", if line.is_some() { ", " } else { "" })))]
    File {
        line: Option<usize>,
        field: Option<String>,
        message: String,
    },
    /// A file the deployment names was not passed in.
    #[error("the bytes of {0} are missing")]
    MissingInput(String),
    /// The hub's values did not serialise (not expected: plain fields).
    #[error("cannot render the hub's configuration: {0}")]
    Render(String),
    /// No Docker engine answers.
    #[error(
        "cannot reach the Docker engine at {host}: {source} (is dockerd running? DOCKER_HOST names another engine)"
    )]
    Unreachable {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine is not a swarm manager.
    #[error(
        "this Docker engine is not a swarm manager ({state}): run `hubgate deploy init` here, or point DOCKER_HOST at a manager"
    )]
    NotManager { state: String },
    /// An engine call failed.
    #[error("{what}: {source}")]
    Engine {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The plan cannot run.
    #[error("cannot apply:\n{}", .0.join("\n"))]
    Refused(Vec<String>),
    /// An image a service needs is neither here nor in a registry.
    #[error(
        "image {image} is not on this engine and cannot be pulled ({reason}): build it here (images/build) or push it to a registry the nodes reach"
    )]
    MissingImage { image: String, reason: String },
    /// The system's random source failed (for the proxy token).
    #[error("no random bytes for the proxy token from the system")]
    Random,
    /// The swarm rolled a service's update back: it runs as before.
    #[error(
        "the update of {service} failed ({reason}); the swarm rolled it back to its last working spec, which keeps serving: fix the deployment file and apply again"
    )]
    RolledBack { service: String, reason: String },
    /// Services did not converge in time.
    #[error("{0}")]
    NotConverged(String),
}

impl DeployError {
    /// An engine error, with what was being done.
    pub(crate) fn engine(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let what = what.into();
        move |source| Self::Engine { what, source }
    }
}
