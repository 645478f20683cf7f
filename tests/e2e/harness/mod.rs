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

mod backend;
mod binary;
mod client;
mod pebble;
mod recorder;
mod scripted;

pub use backend::*;
pub use binary::*;
pub use client::*;
pub use pebble::*;
pub use recorder::*;
pub use scripted::*;

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
        let serve_config = ServeConfig {
            tls,
            ..ServeConfig::default()
        };
        Self::with_serve(config, host_routing, serve_config).await
    }

    /// A proxy with these client-side limits.
    pub async fn with_limits(limits: server::Limits) -> Self {
        let serve_config = ServeConfig {
            limits,
            ..ServeConfig::default()
        };
        Self::with_serve(ProxyConfig::default(), false, serve_config).await
    }

    pub async fn with_serve(
        config: ProxyConfig,
        host_routing: bool,
        serve_config: ServeConfig,
    ) -> Self {
        let routes = Arc::new(RouteStore::new(host_routing));
        let proxy = Arc::new(Proxy::new(config, routes.clone()).unwrap());
        let shutdown = Shutdown::new();
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
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

/// A port free on loopback that no other test of this process was given.
///
/// Port 0 would be simpler, but several tests here hand ports to programs
/// that bind them later (Pebble, a second hubgate): a port the kernel gave
/// one test and took back can go to another before its first user binds it.
/// So ports come from a counter below the kernel's ephemeral range (32768
/// and up, where outgoing connections take theirs), each checked free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) * 7919;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(20_000 + (base + n) % 12_000).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
