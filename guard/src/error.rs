//! The guard's errors.

use std::path::PathBuf;

/// What can go wrong serving a guarded socket.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The policy file is not a policy.
    #[error("the guard's policy: {0}")]
    Policy(String),
    /// A guarded socket could not be made.
    #[error("cannot serve {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}
