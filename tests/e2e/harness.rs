//! The reusable end-to-end harness: builder-style backends on port 0 that
//! record what they receive, an in-process proxy with its REST API, a
//! spawned `hubgate` binary, and small HTTP/websocket clients.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hubgate_proxy::server::{self, Listener, ServeConfig, Shutdown};
use hubgate_proxy::{Api, Proxy, ProxyConfig, RouteStore};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

pub const TOKEN: &str = "test-token";

// === backends ===

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: u64,
}

#[derive(Clone, Default)]
struct Behaviour {
    name: String,
    status: u16,
    delay: Option<Duration>,
    download: Option<u64>,
}

/// A backend under test's control.
pub struct Backend {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Builds a [`Backend`].
pub struct BackendBuilder {
    behaviour: Behaviour,
    websocket: bool,
}

impl Backend {
    /// An HTTP backend answering `backend <name>` with status 200.
    pub fn http(name: &str) -> BackendBuilder {
        BackendBuilder {
            behaviour: Behaviour {
                name: name.into(),
                status: 200,
                ..Default::default()
            },
            websocket: false,
        }
    }

    /// A websocket backend that echoes every message.
    pub fn websocket_echo(name: &str) -> BackendBuilder {
        BackendBuilder {
            behaviour: Behaviour {
                name: name.into(),
                ..Default::default()
            },
            websocket: true,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub async fn seen(&self) -> Vec<Seen> {
        self.seen.lock().await.clone()
    }

    pub async fn last(&self) -> Seen {
        self.seen
            .lock()
            .await
            .last()
            .cloned()
            .expect("backend saw no request")
    }

    /// Stops accepting (existing connections die with the task).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl BackendBuilder {
    pub fn status(mut self, status: u16) -> Self {
        self.behaviour.status = status;
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.behaviour.delay = Some(d);
        self
    }

    /// Answer with a streamed body of `bytes` zero bytes.
    pub fn download(mut self, bytes: u64) -> Self {
        self.behaviour.download = Some(bytes);
        self
    }

    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, s, b, ws, c) = (
            hits.clone(),
            seen.clone(),
            Arc::new(self.behaviour),
            self.websocket,
            connections.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, s, b) = (h.clone(), s.clone(), b.clone());
                tokio::spawn(async move {
                    if ws {
                        websocket_echo(stream, h, s).await;
                    } else {
                        serve_http(stream, h, s, b).await;
                    }
                });
            }
        });
        Backend {
            addr,
            hits,
            connections,
            seen,
            task,
        }
    }
}

async fn serve_http(
    stream: TcpStream,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    b: Arc<Behaviour>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let (hits, seen, b) = (hits.clone(), seen.clone(), b.clone());
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let (parts, mut body) = req.into_parts();
            let mut body_len = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            seen.lock().await.push(Seen {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body_len,
            });
            if let Some(d) = b.delay {
                tokio::time::sleep(d).await;
            }
            let body: BoxBody = match b.download {
                Some(n) => stream_zeros(n),
                None => Full::new(Bytes::from(format!("backend {}", b.name)))
                    .map_err(|e| match e {})
                    .boxed(),
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::from_u16(b.status).unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A streamed body of `n` zero bytes in 64 KiB chunks.
pub fn stream_zeros(n: u64) -> BoxBody {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let len = left.min(chunk.len() as u64);
                (
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len as usize))),
                    left - len,
                )
            })
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn websocket_echo(stream: TcpStream, hits: Arc<AtomicUsize>, seen: Arc<Mutex<Vec<Seen>>>) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request as WsReq, Response as WsResp};
    let mut request = None;
    let callback = |req: &WsReq, resp: WsResp| {
        request = Some(Seen {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
            body_len: 0,
        });
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = request {
        seen.lock().await.push(r);
    }
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

// === the proxy in process ===

/// A proxy and its REST API on port 0, in this test's runtime.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub routes: Arc<RouteStore>,
    pub proxy: Arc<Proxy>,
    pub shutdown: Shutdown,
}

impl TestProxy {
    pub async fn start() -> Self {
        Self::with(ProxyConfig::default(), false).await
    }

    pub async fn with(config: ProxyConfig, host_routing: bool) -> Self {
        Self::with_tls(config, host_routing, None).await
    }

    pub async fn with_tls(
        config: ProxyConfig,
        host_routing: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let routes = Arc::new(RouteStore::new(host_routing));
        let proxy = Arc::new(Proxy::new(config, routes.clone()).unwrap());
        let shutdown = Shutdown::new();
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let serve_config = ServeConfig {
            tls,
            idle_timeout: None,
        };
        tokio::spawn(server::serve(
            listener,
            serve_config,
            proxy.clone(),
            shutdown.clone(),
        ));
        let api = Arc::new(Api::new(
            routes.clone(),
            Some(TOKEN.into()),
            proxy.metrics().clone(),
        ));
        let api_listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let api_addr = api_listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            api_listener,
            ServeConfig::default(),
            api,
            shutdown.clone(),
        ));
        Self {
            addr,
            api_addr,
            routes,
            proxy,
            shutdown,
        }
    }

    /// `POST /api/routes<path>` with `{"target": target}`; asserts 201.
    pub async fn add_route(&self, path: &str, target: &str) {
        let body = serde_json::json!({ "target": target }).to_string();
        let (status, text) = self
            .api(Method::POST, &format!("/api/routes{path}"), &body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }

    /// A request to the REST API with the right token.
    pub async fn api(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        api_call(self.api_addr, method, path, body, Some(TOKEN)).await
    }
}

pub async fn api_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("token {t}"));
    }
    let resp = send(
        addr,
        req.body(Full::new(Bytes::from(body.to_owned()))).unwrap(),
    )
    .await;
    (
        resp.status(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

// === clients ===

/// Sends one request over a new HTTP/1.1 connection and collects the body.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// `GET path` with a Host header; status and body text.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    get_host(addr, path, "localhost").await
}

pub async fn get_host(addr: SocketAddr, path: &str, host: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::default())
        .unwrap();
    let resp = send(addr, req).await;
    (
        resp.status(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

/// Sends over HTTP/2 on an existing I/O (h2c or TLS).
pub async fn send_h2<I>(io: I, req: Request<Full<Bytes>>) -> Response<Bytes>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a websocket to `ws://addr{path}`.
pub async fn websocket(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and expects it back.
pub async fn echo(ws: &mut Ws, text: &str) {
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo timed out");
    assert_eq!(reply.unwrap().unwrap().into_text().unwrap().as_str(), text);
}

// === helpers ===

/// Polls `cond` every 20 ms until it holds, for at most `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// === the binary ===

/// A `hubgate` process, killed on drop.
pub struct Hubgate {
    pub child: Child,
    pub port: u16,
    pub api_port: u16,
}

impl Hubgate {
    /// `hubgate serve --ip 127.0.0.1 --port P --api-port Q <extra>` with the
    /// test token; waits until the API answers.
    pub async fn spawn(extra: &[&str]) -> Self {
        Self::spawn_env(extra, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await
    }

    pub async fn spawn_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let (port, api_port) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
        cmd.args([
            "serve",
            "--ip",
            "127.0.0.1",
            "--api-ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--api-port",
            &api_port.to_string(),
        ])
        .args(extra)
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .env_remove("CONFIGPROXY_AUTH_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
        let child = cmd.spawn().unwrap();
        let me = Self {
            child,
            port,
            api_port,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], api_port).into();
        wait_for(Duration::from_secs(10), "hubgate to listen", || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        me
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn api_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.api_port).into()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "hubgate did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hubgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A byte counter for streamed bodies.
pub async fn drain_body(body: Incoming) -> u64 {
    let total = AtomicU64::new(0);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            total.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
    }
    total.into_inner()
}
