//! Accept loops. Every entry point takes a bound [`Listener`] and a
//! [`Shutdown`], so tests bind port 0 and a supervisor can start or stop
//! listeners while the route table and certificates live elsewhere.
//!
//! Connections speak HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN `h2` over
//! TLS), with upgrades. On shutdown a listener stops accepting, open
//! connections finish their in-flight requests (hyper's graceful shutdown),
//! and tunnels stay until [`Shutdown::force`].

mod auxiliary;
mod conn;
mod gate;
mod inline;
mod rewind;
mod watchdog;
mod watched;

use auxiliary::status_only;
pub use auxiliary::{HEALTH_PATH, Http01, MetricsEndpoint, Redirect, health_answer};
pub(crate) use rewind::Rewind;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::ResponseBody;
use crate::metrics::Metrics;

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;

    /// Whether plain HTTP/1.1 requests without a body go to
    /// [`Handler::handle_plain`] through the inline server (see `inline`)
    /// rather than through hyper's.
    const INLINE: bool = false;

    /// Answers a request without a body that the inline server parsed
    /// (called only when [`Handler::INLINE`] is set).
    fn handle_plain<'a>(
        &'a self,
        req: Request<PlainBody>,
        conn: &'a ConnInfo,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        let _ = (req, conn);
        std::future::ready(status_only(http::StatusCode::NOT_IMPLEMENTED))
    }

    /// Counters for open connections, when this handler keeps them.
    fn metrics(&self) -> Option<&Metrics> {
        None
    }
}

/// The body of a request the inline server parsed: none.
pub type PlainBody = http_body_util::Empty<bytes::Bytes>;

/// What a handler knows about the client connection.
pub struct ConnInfo {
    /// The client's address (none on a unix socket).
    pub peer: Option<IpAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// `peer` as a header value, made once per connection.
    pub(crate) peer_value: Option<http::HeaderValue>,
    pub(crate) shutdown: Shutdown,
}

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket (`--socket`, `--api-socket`).
    Unix(UnixListener),
}

impl Listener {
    /// Binds a TCP listener.
    pub async fn bind_tcp(addr: SocketAddr) -> io::Result<Self> {
        TcpListener::bind(addr).await.map(Self::Tcp)
    }

    /// Adopts a bound std listener (e.g. one of several `SO_REUSEPORT`
    /// sockets, one per worker). Must be called inside a runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener).map(Self::Tcp)
    }

    /// Adopts a bound std unix listener. Must be called inside a runtime.
    pub fn from_std_unix(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener).map(Self::Unix)
    }

    /// Binds a unix socket at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &Path) -> io::Result<Self> {
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(path)?;
        }
        UnixListener::bind(path).map(Self::Unix)
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

/// Shutdown signalling shared by every listener of a process.
#[derive(Clone, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    force: CancellationToken,
    connections: TaskTracker,
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
    fn for_listener(&self) -> Self {
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

/// How a listener serves connections.
#[derive(Clone, Default)]
pub struct ServeConfig {
    /// TLS for every connection (ALPN `h2` and `http/1.1`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Timeouts and sizes; see [`Limits`].
    pub limits: Limits,
    /// TCP keepalive idle time on accepted TLS connections (plain ones get
    /// it when they become a websocket tunnel).
    pub tcp_keepalive: Option<Duration>,
}

/// What one client may hold, with nginx's equivalent in brackets.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A connection that has not sent a whole request head this long after
    /// it opened or after its last request ended, is closed
    /// (`client_header_timeout`, 60 s).
    pub header_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (`keepalive_timeout`; `--keep-alive-timeout`, 5 s as CHP).
    pub keep_alive: Duration,
    /// A connection whose socket carries no bytes either way for this long
    /// is closed, requests in flight included (CHP's `--timeout`; none).
    pub socket_timeout: Option<Duration>,
    /// Largest request head; more is a 431 (`large_client_header_buffers`
    /// 4 × 8 KiB; here 64 KiB).
    pub max_head: usize,
    /// Most header fields in a head; more is a 431 (nginx: no count).
    pub max_fields: usize,
    /// Longest request target; longer is a 414 (8 KiB, as nginx's buffer).
    pub max_request_line: usize,
    /// Open connections per listener (per worker); beyond it new ones wait
    /// in the kernel's backlog (`worker_connections`, 512).
    pub max_connections: usize,
    /// Open connections per client address per listener; beyond it a new
    /// one gets a 503 and is closed (`limit_conn`; none by default).
    pub max_per_client: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(5),
            socket_timeout: None,
            max_head: 64 * 1024,
            max_fields: 100,
            max_request_line: 8 * 1024,
            max_connections: 16_384,
            max_per_client: None,
        }
    }
}

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
        let task = accept.clone().serve(io, peer);
        shutdown.connections.spawn(async move {
            task.await;
            drop(ticket);
        });
    }
}

pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept_one(listener: &Listener) -> io::Result<(Accepted, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Accepted::Tcp(s), Some(peer.ip())))
        }
        Listener::Unix(l) => Ok((Accepted::Unix(l.accept().await?.0), None)),
    }
}

/// A plain-HTTP client over its per-address limit gets a 503, written if
/// the socket takes it at once (a TLS one is only closed: a 503 would need
/// the handshake the limit is there to spare).
fn refuse(io: Accepted) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";
    if let Accepted::Tcp(s) = io {
        let _ = s.try_write(BUSY);
    }
}
