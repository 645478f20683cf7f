//! The watchdog beside each client connection: one timer per connection
//! (never one per request) that closes what would otherwise hold a file
//! descriptor for ever: a connection that never completes a head, an idle
//! keep-alive or HTTP/2 connection, and (with `--timeout`) a socket with no
//! traffic either way. It also runs the shutdown sequence.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::config::Limits;
use super::shutdown::Shutdown;

/// What the connection's own requests tell its watchdog. Written only by
/// the connection's task, so the atomics are never contended.
#[derive(Default)]
pub(super) struct Requests {
    pub(super) started: AtomicU64,
    pub(super) in_flight: AtomicU32,
    /// When the last request ended, in ms since the connection opened.
    pub(super) last_end_ms: AtomicU64,
}

/// A request of the connection, from its head until its response body is
/// dropped.
pub(super) struct InFlight {
    requests: Arc<Requests>,
    opened: Instant,
}

impl InFlight {
    pub(super) fn start(requests: Arc<Requests>, opened: Instant) -> Self {
        requests.started.fetch_add(1, Relaxed);
        requests.in_flight.fetch_add(1, Relaxed);
        Self { requests, opened }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.requests.in_flight.fetch_sub(1, Relaxed);
        self.requests
            .last_end_ms
            .store(ms_since(self.opened), Relaxed);
    }
}

/// A response body that keeps its request in flight.
pub(super) struct Tracked<B> {
    pub(super) body: B,
    pub(super) _guard: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One connection's watchdog.
pub(super) struct Watch {
    pub(super) limits: Arc<Limits>,
    pub(super) shutdown: Shutdown,
    pub(super) opened: Instant,
    pub(super) requests: Arc<Requests>,
    /// Last traffic in ms since `opened` (with `--timeout` only).
    pub(super) traffic: Option<Arc<AtomicU64>>,
}

impl Watch {
    /// Drives `connection` to its end; `graceful` asks it to finish what is
    /// in flight and take nothing new. A request is in flight from its head
    /// until its response body is dropped ([`InFlight`]).
    pub(super) async fn run<C, E>(&self, connection: C, graceful: fn(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: Display,
    {
        tokio::pin!(connection);
        let limits = &*self.limits;
        let first_look = [
            Some(limits.header_timeout),
            Some(limits.keep_alive),
            limits.socket_timeout,
        ];
        let mut deadline = self.opened + first_look.into_iter().flatten().min().unwrap_or_default();
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = connection.as_mut() => break r,
                () = self.shutdown.graceful.cancelled(), if !closing => {
                    graceful(connection.as_mut());
                    closing = true;
                    deadline = far_future();
                }
                () = self.shutdown.force.cancelled() => break Ok(()),
                () = tokio::time::sleep_until(deadline) => {
                    if closing {
                        // Asked to close after going idle, and still open:
                        // drop it unless a request came in meanwhile.
                        if self.requests.in_flight.load(Relaxed) == 0 {
                            break Ok(());
                        }
                        deadline = Instant::now() + limits.keep_alive;
                        continue;
                    }
                    match self.verdict() {
                        Verdict::Drop => break Ok(()),
                        Verdict::Idle => {
                            graceful(connection.as_mut());
                            closing = true;
                            deadline = Instant::now() + limits.header_timeout;
                        }
                        Verdict::Later(at) => deadline = at,
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "client connection ended with an error");
        }
    }

    fn verdict(&self) -> Verdict {
        let (limits, requests) = (&*self.limits, &*self.requests);
        let now = Instant::now();
        let at = |ms: u64| self.opened + Duration::from_millis(ms);
        let mut next = now + limits.keep_alive;
        if let (Some(limit), Some(traffic)) = (limits.socket_timeout, &self.traffic) {
            let quiet_until = at(traffic.load(Relaxed)) + limit;
            if now >= quiet_until {
                tracing::debug!("client socket idle past --timeout; closing");
                return Verdict::Drop;
            }
            next = next.min(quiet_until);
        }
        if requests.started.load(Relaxed) == 0 {
            // A connection that has not sent one whole head (or, in HTTP/2,
            // opened one stream) within the header timeout.
            let limit = self.opened + limits.header_timeout;
            return if now >= limit {
                Verdict::Drop
            } else {
                Verdict::Later(limit.min(next))
            };
        }
        if requests.in_flight.load(Relaxed) > 0 {
            return Verdict::Later(next);
        }
        let idle_until = at(requests.last_end_ms.load(Relaxed)) + limits.keep_alive;
        if now >= idle_until {
            Verdict::Idle
        } else {
            Verdict::Later(idle_until.min(next))
        }
    }
}

enum Verdict {
    /// Close now: nothing useful can still come.
    Drop,
    /// No request in progress for the keep-alive time: stop taking new
    /// ones (HTTP/2 `GOAWAY`) and close once the last response is out.
    Idle,
    /// Look again then.
    Later(Instant),
}

/// Milliseconds from `since` to now.
pub(super) fn ms_since(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
