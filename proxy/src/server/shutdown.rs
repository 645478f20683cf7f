//! Shutdown signalling shared by every listener of a process: stop
//! accepting, let in-flight requests finish, then close tunnels too.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shutdown signalling shared by every listener of a process.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub(super) graceful: CancellationToken,
    pub(super) force: CancellationToken,
    pub(super) connections: TaskTracker,
    tunnels: TaskTracker,
}

impl Shutdown {
    /// A fresh signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting and lets open connections finish in-flight requests.
    pub fn begin(&self) {
        self.graceful.cancel();
    }

    /// Closes whatever is still open, tunnels included.
    pub fn force(&self) {
        self.graceful.cancel();
        self.force.cancel();
    }

    /// Waits until every HTTP connection has closed (tunnels excluded).
    pub async fn connections_closed(&self) {
        self.connections.close();
        self.connections.wait().await;
    }

    /// Waits until every connection and tunnel has closed.
    pub async fn all_closed(&self) {
        self.connections_closed().await;
        self.tunnels.close();
        self.tunnels.wait().await;
    }

    /// Runs the whole sequence: begin, wait up to `grace` for in-flight
    /// requests, then force and wait for the rest.
    pub async fn drain(&self, grace: Duration) {
        self.begin();
        if tokio::time::timeout(grace, self.connections_closed())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "grace period over; closing remaining connections");
        }
        self.force();
        self.all_closed().await;
    }

    /// The same signal through tokens of one accept loop's own: its
    /// connections wait on them without touching the process-wide ones
    /// (whose waiter lists every worker thread would share).
    pub(super) fn for_listener(&self) -> Self {
        Self {
            graceful: self.graceful.child_token(),
            force: self.force.child_token(),
            connections: self.connections.clone(),
            tunnels: self.tunnels.clone(),
        }
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tunnels
    }

    pub(crate) fn force_token(&self) -> CancellationToken {
        self.force.clone()
    }
}
