//! One client connection: the TLS handshake, hyper's HTTP/1.1 or HTTP/2
//! server, and a watchdog with one timer per connection (never one per
//! request) that closes what would otherwise hold a file descriptor for
//! ever: a connection that sends nothing, a head that never completes, an
//! idle keep-alive or HTTP/2 connection, and (with `--timeout`) a socket
//! with no traffic either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::auxiliary::status_only;
use super::watched::Watched;
use super::{Accepted, ConnInfo, Handler, Limits, Shutdown};
use crate::metrics::Metrics;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection's own requests tell its watchdog. Written only by
/// the connection's task, so the atomics are never contended.
#[derive(Default)]
struct Requests {
    started: AtomicU64,
    in_flight: AtomicU32,
    /// When the last request ended, in ms since the connection opened.
    last_end_ms: AtomicU64,
}

pub(super) struct Accept<H> {
    pub(super) acceptor: Option<TlsAcceptor>,
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(super) handler: Arc<H>,
    pub(super) shutdown: Shutdown,
    pub(super) limits: Arc<Limits>,
}

impl<H> Clone for Accept<H> {
    fn clone(&self) -> Self {
        Self {
            acceptor: self.acceptor.clone(),
            builder: self.builder.clone(),
            handler: self.handler.clone(),
            shutdown: self.shutdown.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl<H: Handler> Accept<H> {
    pub(super) async fn serve(self, io: Accepted, peer: Option<std::net::IpAddr>) {
        let metrics = self.handler.clone();
        let _open = metrics.metrics().map(Metrics::connection_opened);
        let conn = Arc::new(ConnInfo {
            peer,
            tls: self.acceptor.is_some(),
            peer_value: peer.and_then(crate::headers::peer_value),
            shutdown: self.shutdown.clone(),
        });
        match (io, self.acceptor.clone()) {
            (Accepted::Tcp(s), None) => self.serve_io(s, conn).await,
            (Accepted::Unix(s), None) => self.serve_io(s, conn).await,
            (Accepted::Tcp(s), Some(acceptor)) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    // A TLS-ALPN-01 validation (RFC 8737 §3) ends with the
                    // handshake: no HTTP on that connection.
                    Ok(Ok(tls))
                        if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) =>
                    {
                        tracing::debug!(peer = ?peer, "answered a TLS-ALPN-01 challenge");
                    }
                    Ok(Ok(tls)) => self.serve_io(tls, conn).await,
                    Ok(Err(e)) => tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = ?peer, "TLS handshake timed out"),
                }
            }
            (Accepted::Unix(s), Some(acceptor)) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => self.serve_io(tls, conn).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<I>(self, io: I, conn: Arc<ConnInfo>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Only `--timeout` needs to see the socket's traffic; without it the
        // stream stays bare, so a websocket tunnel can still splice it.
        let opened = Instant::now();
        match self.limits.socket_timeout {
            Some(_) => {
                let (io, traffic) = Watched::new(io, opened);
                self.run(io, conn, opened, Some(traffic)).await;
            }
            None => self.run(io, conn, opened, None).await,
        }
    }

    async fn run<I>(
        self,
        io: I,
        conn: Arc<ConnInfo>,
        opened: Instant,
        traffic: Option<Arc<AtomicU64>>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let requests = Arc::new(Requests::default());
        let (handler, seen, limits) = (self.handler.clone(), requests.clone(), self.limits.clone());
        let service = service_fn(move |req| {
            let (handler, conn, seen) = (handler.clone(), conn.clone(), seen.clone());
            let max_target = limits.max_request_line;
            async move {
                seen.started.fetch_add(1, Relaxed);
                seen.in_flight.fetch_add(1, Relaxed);
                let resp = if target_len(&req) > max_target {
                    status_only(http::StatusCode::URI_TOO_LONG)
                } else {
                    handler.handle(req, conn).await
                };
                seen.in_flight.fetch_sub(1, Relaxed);
                seen.last_end_ms.store(ms_since(opened), Relaxed);
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let limits = &self.limits;
        let first_look = [
            Some(limits.header_timeout),
            Some(limits.keep_alive),
            limits.socket_timeout,
        ];
        let mut deadline = opened + first_look.into_iter().flatten().min().unwrap_or_default();
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = connection.as_mut() => break r,
                () = self.shutdown.graceful.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = far_future();
                }
                () = self.shutdown.force.cancelled() => break Ok(()),
                () = tokio::time::sleep_until(deadline) => {
                    if closing {
                        break Ok(()); // asked to close and still open
                    }
                    match verdict(limits, opened, &requests, traffic.as_deref()) {
                        Verdict::Drop => break Ok(()),
                        Verdict::Idle => {
                            connection.as_mut().graceful_shutdown();
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

fn verdict(
    limits: &Limits,
    opened: Instant,
    requests: &Requests,
    traffic: Option<&AtomicU64>,
) -> Verdict {
    let now = Instant::now();
    let at = |ms: u64| opened + Duration::from_millis(ms);
    let mut next = now + limits.keep_alive;
    if let (Some(limit), Some(traffic)) = (limits.socket_timeout, traffic) {
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
        let limit = opened + limits.header_timeout;
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

/// Milliseconds from `since` to now.
pub(super) fn ms_since(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The length of the request target as the client sent it (origin form, or
/// absolute form with its authority).
fn target_len<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
}
