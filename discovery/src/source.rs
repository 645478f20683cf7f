//! The one trait every route source implements, the channel it publishes
//! on, and the static source.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{Snapshot, State, Status};

/// A boxed future a source runs as.
pub type Running = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of routes: runs until `shutdown`, publishing each new whole
/// layer (and every change of its state) to `out`.
pub trait Source: Send + 'static {
    /// The running source.
    fn run(self: Box<Self>, out: Publisher, shutdown: CancellationToken) -> Running;
}

/// The sending half of a source's output.
#[derive(Debug)]
pub struct Publisher {
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    status: watch::Sender<Arc<Status>>,
}

/// The receiving half: the latest layer (`None` until the first sync, so a
/// consumer never mistakes "not synced yet" for "no routes") and state.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The latest whole layer.
    pub snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The latest state.
    pub status: watch::Receiver<Arc<Status>>,
}

/// A connected publisher and subscriber.
pub fn channel(source: &str) -> (Publisher, Subscriber) {
    let status = Status {
        source: source.to_owned(),
        ..Status::default()
    };
    let (snapshot_tx, snapshot_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(Arc::new(status));
    (
        Publisher {
            snapshot: snapshot_tx,
            status: status_tx,
        },
        Subscriber {
            snapshot: snapshot_rx,
            status: status_rx,
        },
    )
}

impl Publisher {
    /// Publishes a layer, unless it equals the last one.
    pub fn snapshot(&self, snapshot: Snapshot) {
        self.snapshot.send_if_modified(|current| {
            if current.as_deref() == Some(&snapshot) {
                return false;
            }
            *current = Some(Arc::new(snapshot));
            true
        });
    }

    /// Changes the state, unless nothing changed.
    pub fn status(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_if_modified(|current| {
            let mut next = Status::clone(current);
            change(&mut next);
            if next == **current {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }
}

/// A fixed layer (tests, and `--discovery-file`, which the binary reads).
#[derive(Debug, Clone)]
pub struct StaticSource(pub Snapshot);

impl Source for StaticSource {
    fn run(self: Box<Self>, out: Publisher, shutdown: CancellationToken) -> Running {
        Box::pin(async move {
            out.snapshot(self.0);
            out.status(|s| {
                s.state = State::Watching;
                s.last_sync_ms = Some(crate::now_ms());
            });
            shutdown.cancelled().await;
            out.status(|s| s.state = State::Stopped);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_static_source_publishes_once_and_stops_on_shutdown() {
        let (out, mut sub) = channel("static");
        assert!(sub.snapshot.borrow().is_none());
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(Box::new(StaticSource(Snapshot::default())).run(out, shutdown.clone()));
        sub.snapshot.changed().await.unwrap();
        assert!(sub.snapshot.borrow().is_some());
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(sub.status.borrow().state, State::Stopped);
    }

    #[test]
    fn unchanged_layers_are_not_republished() {
        let (out, mut sub) = channel("static");
        out.snapshot(Snapshot::default());
        sub.snapshot.mark_unchanged();
        out.snapshot(Snapshot::default());
        assert!(!sub.snapshot.has_changed().unwrap());
    }
}
