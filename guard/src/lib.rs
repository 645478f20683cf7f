//! hubgate's Docker API guard: the only process that holds the engine's
//! socket, serving guarded sockets that forward a call only when the
//! socket's [`Policy`] allows it. A call is checked for shape
//! ([`target`]: no encoded characters, `..` or unknown version prefixes),
//! its JSON body parsed as the daemon would read it without its
//! ambiguities ([`json`]: keys that differ only in case are refused), then
//! judged; answers that must not be seen whole are filtered (environment
//! values dropped). Everything refused gets a 403 (or 400) naming the rule,
//! and a log line.
//!
//! The library reads no files: the binary hands it the parsed
//! [`GuardConfig`], bound listeners and a shutdown signal.

mod error;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod json;
mod policy;
mod query;
mod redact;
mod server;
pub mod target;

use serde::Deserialize;

pub use error::GuardError;
pub use policy::{
    DataMount, Filter, Kind, Limits, Owned, Policy, ServerRule, SpawnerPolicy, Verdict,
    VolumePolicy, Want,
};
pub use server::{MAX_BODY, serve};

/// The guard's configuration: the sockets it serves and each one's policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    pub sockets: Vec<SocketConfig>,
}

/// One guarded socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Where it is served (a directory only the tasks that need it mount).
    pub path: String,
    /// The uid that owns it (mode 0600): the one process that may connect.
    pub owner: u32,
    pub policy: Policy,
}

impl GuardConfig {
    /// Parses a configuration's JSON text.
    pub fn parse(text: &str) -> Result<Self, GuardError> {
        serde_json::from_str(text).map_err(|e| GuardError::Policy(e.to_string()))
    }
}

/// Binds a guarded socket at `path` (replacing a stale one), owned by
/// `owner` with mode 0600.
pub fn bind(path: &std::path::Path, owner: u32) -> Result<tokio::net::UnixListener, GuardError> {
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |source| GuardError::Listen {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
    std::os::unix::fs::chown(path, Some(owner), None).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}
