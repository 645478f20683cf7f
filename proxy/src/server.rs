//! Accept loops. Every entry point takes a bound [`Listener`] and a
//! [`Shutdown`], so tests bind port 0 and a supervisor can start or stop
//! listeners while the route table and certificates live elsewhere.
//!
//! Connections speak HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN `h2` over
//! TLS), with upgrades. On shutdown a listener stops accepting, open
//! connections finish their in-flight requests (hyper's graceful shutdown),
//! and tunnels stay until [`Shutdown::force`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::ResponseBody;
use crate::metrics::Metrics;
use crate::route::RouteStore;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;

    /// Counters for open connections, when this handler keeps them.
    fn metrics(&self) -> Option<&Metrics> {
        None
    }
}

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
    /// Closes an HTTP/1 connection that sends no complete request head for
    /// this long, idle keep-alive connections included (`--keep-alive-timeout`).
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time on accepted TLS connections (plain ones get
    /// it when they become a websocket tunnel).
    pub tcp_keepalive: Option<Duration>,
}

/// Serves `handler` on `listener` until `shutdown` begins. Connections are
/// tracked by `shutdown`; this returns when accepting stops.
pub async fn serve<H: Handler>(
    listener: Listener,
    config: ServeConfig,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout.unwrap_or(Duration::from_secs(300)));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            () = shutdown.graceful.cancelled() => break,
            a = accept(&listener) => a,
        };
        let (io, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let (Accepted::Tcp(s), Some(idle), Some(_)) = (&io, config.tcp_keepalive, &acceptor) {
            if let Err(e) = crate::upstream::socket::keepalive(s, idle) {
                tracing::debug!(error = %e, "cannot set TCP keepalive");
            }
        }
        let task = serve_accepted(
            io,
            peer,
            acceptor.clone(),
            builder.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        shutdown.connections.spawn(task);
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<(Accepted, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Accepted::Tcp(s), Some(peer.ip())))
        }
        Listener::Unix(l) => Ok((Accepted::Unix(l.accept().await?.0), None)),
    }
}

async fn serve_accepted<H: Handler>(
    io: Accepted,
    peer: Option<IpAddr>,
    acceptor: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let metrics = handler.clone();
    let _open = metrics.metrics().map(Metrics::connection_opened);
    let conn = Arc::new(ConnInfo {
        peer,
        tls: acceptor.is_some(),
        peer_value: peer.and_then(crate::headers::peer_value),
        shutdown: shutdown.clone(),
    });
    match (io, acceptor) {
        (Accepted::Tcp(s), None) => serve_io(s, conn, &builder, handler, &shutdown).await,
        (Accepted::Unix(s), None) => serve_io(s, conn, &builder, handler, &shutdown).await,
        (Accepted::Tcp(s), Some(acceptor)) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                // A TLS-ALPN-01 validation (RFC 8737 §3) ends with the
                // handshake: no HTTP on that connection.
                Ok(Ok(tls))
                    if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) =>
                {
                    tracing::debug!(peer = ?peer, "answered a TLS-ALPN-01 challenge");
                }
                Ok(Ok(tls)) => serve_io(tls, conn, &builder, handler, &shutdown).await,
                Ok(Err(e)) => tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = ?peer, "TLS handshake timed out"),
            }
        }
        (Accepted::Unix(s), Some(acceptor)) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                Ok(Ok(tls)) => serve_io(tls, conn, &builder, handler, &shutdown).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I, H>(
    io: I,
    conn: Arc<ConnInfo>,
    builder: &auto::Builder<TokioExecutor>,
    handler: Arc<H>,
    shutdown: &Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.handle(req, conn).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = shutdown.graceful.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                r = connection.as_mut() => r,
                () = shutdown.force.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

// === auxiliary listeners ===

/// `GET /metrics` in the Prometheus text format; every other path is 404.
pub struct MetricsEndpoint {
    /// The counters to render.
    pub metrics: Arc<Metrics>,
    /// The route table, for the route count.
    pub routes: Arc<RouteStore>,
    /// More metrics text, appended (the binary's certificate expiries).
    pub extra: Option<crate::api::StatusPage>,
}

impl Handler for MetricsEndpoint {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        if req.uri().path() != "/metrics" {
            return status_only(StatusCode::NOT_FOUND);
        }
        let mut text = self.metrics.render(&self.routes.load());
        if let Some(extra) = &self.extra {
            text.push_str(&extra());
        }
        let mut resp = Response::new(ResponseBody::full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

/// Answers every request with a 301 to the same URL over HTTPS
/// (`--redirect-port`), as CHP does: 400 without `Host`, `:443` omitted.
pub struct Redirect {
    /// The HTTPS port to point at.
    pub https_port: u16,
    /// Answers ACME HTTP-01 challenges (`/.well-known/acme-challenge/<token>`,
    /// RFC 8555 §8.3) instead of redirecting them: token → key authorization.
    pub http01: Option<Http01>,
}

/// Looks up the key authorization of an HTTP-01 challenge token.
pub type Http01 = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// configurable-http-proxy's health check path, answered by the proxy and
/// by the redirect listener alike (so the image's `HEALTHCHECK` on port 80
/// works with HTTPS on).
pub const HEALTH_PATH: &str = "/_chp_healthz";

/// The health check's answer.
pub fn health_answer() -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(r#"{"status": "OK"}"#));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Where ACME HTTP-01 challenges are fetched.
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl Handler for Redirect {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        if req.uri().path() == HEALTH_PATH {
            return health_answer();
        }
        if let (Some(http01), Some(token)) = (
            &self.http01,
            req.uri().path().strip_prefix(CHALLENGE_PREFIX),
        ) {
            return match http01(token) {
                Some(answer) => {
                    let mut resp = Response::new(ResponseBody::full(answer));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    resp
                }
                None => status_only(StatusCode::NOT_FOUND),
            };
        }
        let Some(host) = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        else {
            return status_only(StatusCode::BAD_REQUEST);
        };
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
            Ok(location) => {
                let mut resp = status_only(StatusCode::MOVED_PERMANENTLY);
                resp.headers_mut().insert(header::LOCATION, location);
                resp
            }
            Err(_) => status_only(StatusCode::BAD_REQUEST),
        }
    }
}

fn status_only(status: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}
