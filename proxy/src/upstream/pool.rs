//! Upstream connections through hyper's client, pooled per thread (see
//! `idle`), and the connector that opens them.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::body::UpstreamBody;
pub(crate) use super::idle::PoolKey;
use super::idle::{Idle, Pool, park, unpark};
use super::target::{Endpoint, Target};
use crate::clock::Activity;
use crate::error::ProxyError;

pub(crate) type Sender = http1::SendRequest<UpstreamBody>;

thread_local! {
    static IDLE: Idle<(PoolKey, Sender)> = RefCell::new(Pool::new());
}

/// Sweeps this thread's pool of hyper connections; returns those that go.
pub(crate) fn sweep(now: std::time::Instant) -> Vec<(PoolKey, Sender)> {
    super::idle::sweep(&IDLE, now, |(_, sender)| !sender.is_closed())
}

static NEXT_CONNECTOR: AtomicU64 = AtomicU64::new(0);

/// Returns a connection whose response has been read to the end.
pub(crate) fn put_back(key: PoolKey, sender: Sender) {
    if !sender.is_closed() {
        park(&IDLE, (key, sender), |(key, _)| key);
    }
}

fn take_idle(connector: u64, upstream: &str) -> Option<Sender> {
    unpark(&IDLE, connector, upstream, |(_, sender)| {
        !sender.is_closed()
    })
    .map(|((_, s), _)| s)
}

/// Opens upstream connections. A clone opens them the same way and shares
/// the pool key (pools are per thread anyway).
#[derive(Clone)]
pub(crate) struct Connector {
    id: u64,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    keepalive: Option<Duration>,
}

impl Connector {
    pub(crate) fn new(
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        keepalive: Option<Duration>,
    ) -> Self {
        Self {
            id: NEXT_CONNECTOR.fetch_add(1, Ordering::Relaxed),
            tls,
            connect_timeout,
            keepalive,
        }
    }

    /// The pool key for connections to `target`.
    pub(crate) fn key(&self, target: &Target) -> PoolKey {
        (self.id, target.pool_key.clone())
    }

    /// This connector's half of every pool key it makes.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// A ready connection to `target`: an idle pooled one, else a new one.
    pub(crate) async fn get(&self, target: &Target) -> Result<Sender, ProxyError> {
        while let Some(mut sender) = take_idle(self.id, &target.pool_key) {
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        self.connect(target).await
    }

    /// A new connection to `target`, never a pooled one.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Sender, ProxyError> {
        let upstream = || target.pool_key.to_string();
        let failed = |source| ProxyError::Connect {
            upstream: upstream(),
            source,
        };
        match &target.endpoint {
            Endpoint::Tcp { .. } => handshake(self.connect_tcp(target).await?)
                .await
                .map_err(failed),
            Endpoint::Tls { host, .. } => {
                let tcp = self.connect_tcp(target).await?;
                let tls = async {
                    let name = ServerName::try_from(host.to_string())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                        .connect(name, tcp)
                        .await?;
                    handshake(tls).await
                };
                self.limited(target, tls).await
            }
            Endpoint::Unix(path) => {
                let unix = async { handshake(UnixStream::connect(path).await?).await };
                self.limited(target, unix).await
            }
        }
    }

    /// A new TCP connection to a `Tcp` or `Tls` target's address.
    pub(crate) async fn connect_tcp(&self, target: &Target) -> Result<TcpStream, ProxyError> {
        let (Endpoint::Tcp { host, port } | Endpoint::Tls { host, port }) = &target.endpoint else {
            return Err(ProxyError::Connect {
                upstream: target.pool_key.to_string(),
                source: std::io::Error::other("not a TCP target"),
            });
        };
        let tcp = async {
            let tcp = TcpStream::connect((&**host, *port)).await?;
            tcp.set_nodelay(true)?;
            if let Some(idle) = self.keepalive {
                super::socket::keepalive(&tcp, idle)?;
            }
            Ok(tcp)
        };
        self.limited(target, tcp).await
    }

    /// `connect` within the connect timeout, errors classified.
    async fn limited<T>(
        &self,
        target: &Target,
        connect: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T, ProxyError> {
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(io)) => Ok(io),
            Ok(Err(source)) => Err(ProxyError::Connect {
                upstream: target.pool_key.to_string(),
                source,
            }),
            Err(_) => Err(ProxyError::ConnectTimeout {
                upstream: target.pool_key.to_string(),
            }),
        }
    }
}

async fn handshake<I>(io: I) -> std::io::Result<Sender>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The upstream's response body. When it has been read to the end, the
/// connection goes back to the pool and, for a successful response, the
/// route's activity is bumped (CHP counts completed responses below 300).
pub struct FromUpstream {
    pub(crate) inner: Incoming,
    pub(crate) done: bool,
    conn: Option<(PoolKey, Sender)>,
    activity: Option<Arc<Activity>>,
}

impl FromUpstream {
    pub(crate) fn new(
        inner: Incoming,
        conn: Option<(PoolKey, Sender)>,
        activity: Option<Arc<Activity>>,
    ) -> Self {
        Self {
            inner,
            done: false,
            conn,
            activity,
        }
    }
}

impl Drop for FromUpstream {
    fn drop(&mut self) {
        if self.done || self.inner.is_end_stream() {
            if let Some(activity) = &self.activity {
                activity.touch();
            }
            if let Some((key, sender)) = self.conn.take() {
                put_back(key, sender);
            }
        }
    }
}
