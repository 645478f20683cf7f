//! One client connection: the wait for its first byte, the TLS handshake,
//! and hyper's HTTP/1.1 or HTTP/2 server under the connection's watchdog.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::config::Limits;
use super::gate::Ticket;
use super::handler::{ConnInfo, Handler, status_only};
use super::listener::Accepted;
use super::shutdown::Shutdown;
use super::watchdog::{InFlight, Requests, Tracked, Watch};
use super::watched::Watched;
use crate::metrics::Metrics;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Accept<H> {
    pub(super) acceptor: Option<TlsAcceptor>,
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(super) h1: Arc<hyper::server::conn::http1::Builder>,
    pub(super) handler: Arc<H>,
    pub(super) shutdown: Shutdown,
    pub(super) limits: Arc<Limits>,
}

impl<H> Clone for Accept<H> {
    fn clone(&self) -> Self {
        Self {
            acceptor: self.acceptor.clone(),
            builder: self.builder.clone(),
            h1: self.h1.clone(),
            handler: self.handler.clone(),
            shutdown: self.shutdown.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl<H: Handler> Accept<H> {
    /// Serves one accepted connection. Until its first byte arrives it
    /// costs this small future only: the TLS and HTTP state is made then,
    /// in an allocation of its own; a connection silent for the header
    /// timeout is closed. `_ticket` holds the connection's place at the
    /// gate until it ends.
    pub(super) async fn serve(self, io: Accepted, peer: Option<std::net::IpAddr>, _ticket: Ticket) {
        let metrics = self.handler.clone();
        let _open = metrics.metrics().map(Metrics::connection_opened);
        let first_byte = async {
            match &io {
                // `readable()` may wake before any byte (tokio allows false
                // positives); a peek waits for a byte, or the peer's FIN.
                Accepted::Tcp(s) => {
                    let mut byte = [0u8; 1];
                    s.peek(&mut byte).await.map(|_| Some(byte[0]))
                }
                Accepted::Unix(s) => s.readable().await.map(|()| None),
            }
        };
        match tokio::time::timeout(self.limits.header_timeout, first_byte).await {
            // Only `PRI * HTTP/2.0` (prior-knowledge HTTP/2) starts with `P`
            // among what is not HTTP/1 (POST, PUT, PATCH do too).
            Ok(Ok(first)) => {
                let h1_only = first.is_some_and(|b| b != b'P');
                Box::pin(self.serve_readable(io, peer, h1_only)).await;
            }
            Ok(Err(e)) => tracing::debug!(peer = ?peer, error = %e, "client connection failed"),
            Err(_) => tracing::debug!(peer = ?peer, "client sent nothing; closed"),
        }
    }

    async fn serve_readable(self, io: Accepted, peer: Option<std::net::IpAddr>, h1_only: bool) {
        let conn = Arc::new(ConnInfo {
            peer,
            tls: self.acceptor.is_some(),
            peer_value: peer.and_then(crate::headers::peer_value),
            shutdown: self.shutdown.clone(),
        });
        match (io, self.acceptor.clone()) {
            (Accepted::Tcp(s), None) => self.serve_io(s, conn, h1_only).await,
            (Accepted::Unix(s), None) => self.serve_io(s, conn, h1_only).await,
            // Boxed, so a plain connection's future has no room for TLS
            // state (the handshake's result alone is about 3 KiB).
            (io, Some(acceptor)) => Box::pin(self.serve_tls(io, conn, acceptor)).await,
        }
    }

    /// The TLS handshake (bounded), then the connection over TLS.
    async fn serve_tls(self, io: Accepted, conn: Arc<ConnInfo>, acceptor: TlsAcceptor) {
        let peer = conn.peer;
        match io {
            Accepted::Tcp(s) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, Box::pin(acceptor.accept(s)))
                    .await
                {
                    // A TLS-ALPN-01 validation (RFC 8737 §3) ends with the
                    // handshake: no HTTP on that connection.
                    Ok(Ok(tls))
                        if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) =>
                    {
                        tracing::debug!(peer = ?peer, "answered a TLS-ALPN-01 challenge");
                    }
                    Ok(Ok(tls)) => {
                        let h1_only = tls.get_ref().1.alpn_protocol() == Some(b"http/1.1");
                        Box::pin(self.serve_io(tls, conn, h1_only)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = ?peer, "TLS handshake timed out"),
                }
            }
            Accepted::Unix(s) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, Box::pin(acceptor.accept(s)))
                    .await
                {
                    Ok(Ok(tls)) => Box::pin(self.serve_io(tls, conn, false)).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<I>(self, io: I, conn: Arc<ConnInfo>, h1_only: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Only `--timeout` needs to see the socket's traffic; without it the
        // stream stays bare, so a websocket tunnel can still splice it.
        let opened = Instant::now();
        match self.limits.socket_timeout {
            Some(_) => {
                let (io, traffic) = Watched::new(io, opened);
                self.http(io, conn, opened, Some(traffic), h1_only).await;
            }
            None if H::INLINE && h1_only => self.serve_inline(io, conn, opened).await,
            None => self.http(io, conn, opened, None, h1_only).await,
        }
    }

    /// The HTTP connection under its watchdog, in an allocation of its own
    /// sized for its protocol: without a sign of HTTP/2, hyper's HTTP/1
    /// machinery alone, smaller than the auto builder's room for both. (A
    /// plain function, so the caller's future holds none of it.)
    pub(super) fn http<I>(
        &self,
        io: I,
        conn: Arc<ConnInfo>,
        opened: Instant,
        traffic: Option<Arc<AtomicU64>>,
        h1_only: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let requests = Arc::new(Requests::default());
        let (handler, seen, limits) = (self.handler.clone(), requests.clone(), self.limits.clone());
        let service = service_fn(move |req| {
            let (handler, conn, seen) = (handler.clone(), conn.clone(), seen.clone());
            let (max_target, max_head) = (limits.max_request_line, limits.max_head);
            async move {
                // In flight until the response body is dropped (sent, or the
                // connection gone), not merely until the handler returns: a
                // long download or event stream is not an idle connection.
                let guard = InFlight::start(seen, opened);
                let resp = if target_len(&req) > max_target {
                    status_only(http::StatusCode::URI_TOO_LONG)
                } else if !h1_only && head_len(&req) > max_head {
                    // hyper's own check (`max_header_size`) covers the
                    // HTTP/1-only builder; the auto builder has none.
                    status_only(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                } else {
                    handler.handle(req, conn).await
                };
                Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        });
        let io = TokioIo::new(io);
        let watch = Watch {
            limits: self.limits.clone(),
            shutdown: self.shutdown.clone(),
            opened,
            requests,
            traffic,
        };
        if h1_only {
            let connection = self.h1.serve_connection(io, service).with_upgrades();
            Box::pin(async move { watch.run(connection, |c| c.graceful_shutdown()).await })
        } else {
            let builder = self.builder.clone();
            Box::pin(async move {
                let connection = builder.serve_connection_with_upgrades(io, service);
                watch.run(connection, |c| c.graceful_shutdown()).await;
            })
        }
    }
}

/// The length of the request target as the client sent it (origin form, or
/// absolute form with its authority).
fn target_len<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
}

/// About the size of the request head as sent: target and fields.
fn head_len<B>(req: &http::Request<B>) -> usize {
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    target_len(req) + fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::ResponseBody;

    /// Answers every request itself, inline for plain ones, as the proxy's
    /// handler does.
    struct Plain;

    impl Handler for Plain {
        async fn handle(
            self: Arc<Self>,
            _req: http::Request<hyper::body::Incoming>,
            _conn: Arc<ConnInfo>,
        ) -> http::Response<ResponseBody> {
            status_only(http::StatusCode::OK)
        }

        const INLINE: bool = true;
    }

    /// A plain connection's state between requests is the future that
    /// serves it (a JupyterLab tab's REST connection between polls; a hub
    /// has thousands). It held room for the response writer's state and for
    /// a TLS handshake's result: 4,656 bytes in the release build, now
    /// 1,256; in this debug build 4,728 bytes, now 1,296.
    #[tokio::test]
    async fn a_plain_connection_is_served_by_a_small_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let accept = Accept {
            acceptor: None,
            builder: Arc::new(auto::Builder::new(TokioExecutor::new())),
            h1: Arc::new(hyper::server::conn::http1::Builder::new()),
            handler: Arc::new(Plain),
            shutdown: super::super::shutdown::Shutdown::new(),
            limits: Arc::new(Limits::default()),
        };
        let serving = accept.serve_readable(Accepted::Tcp(server), None, true);
        let size = std::mem::size_of_val(&serving);
        eprintln!("a plain connection's future: {size} bytes");
        assert!(size <= 2_048, "{size} bytes");
    }
}
