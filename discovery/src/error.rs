//! The discovery crate's errors.

/// Why a source lost its view of the routes (it keeps the last one).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The engine's API failed or could not be reached.
    #[error("Docker API: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// The event stream ended (the engine restarted or the socket was cut).
    #[error("Docker event stream ended")]
    StreamEnded,
    /// hubgate cannot tell which networks to reach services on.
    #[error("cannot find hubgate's swarm networks: {0}")]
    Networks(String),
    /// A discovery file that does not parse.
    #[error("bad discovery file: {0}")]
    File(#[from] serde_json::Error),
}
