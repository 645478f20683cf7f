//! Accept loops. Every entry point takes a bound [`Listener`] and a
//! [`Shutdown`], so tests bind port 0 and a supervisor can start or stop
//! listeners while the route table and certificates live elsewhere.
//!
//! Connections speak HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN `h2` over
//! TLS), with upgrades. On shutdown a listener stops accepting, open
//! connections finish their in-flight requests (hyper's graceful shutdown),
//! and tunnels stay until [`Shutdown::force`].

mod auxiliary;
mod config;
mod conn;
mod gate;
mod handler;
mod inline;
mod listener;
mod rewind;
mod shutdown;
mod watchdog;
mod watched;

pub use auxiliary::{HEALTH_PATH, Http01, MetricsEndpoint, Redirect, StatusPage, health_answer};
pub use config::{Limits, ServeConfig};
pub use handler::{ConnInfo, Handler, PlainBody};
pub use listener::Listener;
use listener::{Accepted, accept_one, refuse};
pub(crate) use rewind::Rewind;
pub use shutdown::Shutdown;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

/// How often a failing accept (out of file descriptors) is logged.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` until `shutdown` begins. Connections are
/// tracked by `shutdown`; this returns when accepting stops.
pub async fn serve<H: Handler>(
    listener: Listener,
    config: ServeConfig,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    crate::upstream::start_sweeper();
    let shutdown = shutdown.for_listener();
    let limits = Arc::new(config.limits.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head)
        .max_headers(limits.max_fields);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head).unwrap_or(u32::MAX));
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head)
        .max_header_size(limits.max_head)
        .max_headers(limits.max_fields);
    let accept = conn::Accept {
        acceptor: config.tls.clone().map(TlsAcceptor::from),
        builder: Arc::new(builder),
        h1: Arc::new(h1),
        handler,
        shutdown: shutdown.clone(),
        limits: limits.clone(),
    };
    let mut gate = gate::Gate::new(limits.max_connections, limits.max_per_client);
    let mut last_warned = None;
    // One wait for the shutdown, not one made and dropped per connection.
    let mut stop = std::pin::pin!(shutdown.graceful.cancelled());
    loop {
        let accepted = tokio::select! {
            () = stop.as_mut() => break,
            () = gate.room() => tokio::select! {
                () = stop.as_mut() => break,
                a = accept_one(&listener) => a,
            },
        };
        let (io, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and say
                // so once in a while rather than 20 times a second.
                if last_warned.is_none_or(|t: tokio::time::Instant| t.elapsed() > ACCEPT_WARN_EVERY)
                {
                    tracing::warn!(error = %e, "accept failed; retrying every 50 ms");
                    last_warned = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(ticket) = gate.admit(peer) else {
            if accept.acceptor.is_none() {
                refuse(io);
            }
            continue; // dropped: closed
        };
        if let (Accepted::Tcp(s), Some(idle), Some(_)) =
            (&io, config.tcp_keepalive, &accept.acceptor)
        {
            if let Err(e) = crate::upstream::socket::keepalive(s, idle) {
                tracing::debug!(error = %e, "cannot set TCP keepalive");
            }
        }
        // The connection's future itself, not one wrapping it: a wrapper
        // copies it once more on its first poll, into memory a new
        // connection has not touched yet.
        shutdown
            .connections
            .spawn(accept.clone().serve(io, peer, ticket));
    }
}
