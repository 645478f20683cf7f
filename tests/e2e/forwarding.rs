//! What the upstream receives and what the client gets back: forwarded
//! headers, hop-by-hop fields, Host, pooling, HTTP/2, activity, metrics.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hubgate_proxy::ProxyConfig;
use hubgate_proxy::server::{self, Listener, MetricsEndpoint, ServeConfig};
use tokio::net::TcpStream;

use crate::harness::{Backend, TestProxy, get, send, send_h2};

#[tokio::test]
async fn forwarded_headers_host_and_hop_by_hop() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    let req = Request::get("/x")
        .header("host", "hub.example.org:8000")
        .header("x-forwarded-for", "10.1.1.1")
        .header("x-real-ip", "6.6.6.6")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-connection", "keep-alive")
        .header("x-kept", "yes")
        .body(Full::default())
        .unwrap();
    let resp = send(p.addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = b.last().await.headers;
    assert_eq!(h["host"], "hub.example.org:8000", "Host is preserved");
    assert_eq!(h["x-forwarded-for"], "10.1.1.1,127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], "8000");
    assert_eq!(h["x-forwarded-host"], "hub.example.org:8000");
    assert_eq!(h["x-kept"], "yes");
    for gone in ["x-private", "keep-alive", "te", "proxy-connection"] {
        assert!(!h.contains_key(gone), "{gone} must not be forwarded");
    }
}

#[tokio::test]
async fn no_x_forward_custom_headers_change_origin() {
    let b = Backend::http("a").start().await;
    let config = ProxyConfig {
        x_forward: false,
        change_origin: true,
        custom_headers: vec![
            ("x-custom".parse().unwrap(), HeaderValue::from_static("set")),
            ("x-over".parse().unwrap(), HeaderValue::from_static("proxy")),
        ],
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    p.add_route("/", &b.url()).await;
    let req = Request::get("/")
        .header("host", "public.test")
        .header("x-over", "client")
        .body(Full::default())
        .unwrap();
    send(p.addr, req).await;
    let h = b.last().await.headers;
    assert!(!h.contains_key("x-forwarded-for") && !h.contains_key("x-real-ip"));
    assert_eq!(h["x-custom"], "set");
    assert_eq!(h["x-over"], "proxy");
    assert_eq!(h["host"], b.addr.to_string().as_str());
}

#[tokio::test]
async fn empty_delete_gets_content_length_zero_and_bodies_pass() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    send(
        p.addr,
        Request::delete("/x")
            .header("host", "h")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(b.last().await.headers["content-length"], "0");
    let body = Full::new(Bytes::from_static(b"{\"a\":1}"));
    send(
        p.addr,
        Request::post("/x").header("host", "h").body(body).unwrap(),
    )
    .await;
    let seen = b.last().await;
    assert_eq!((seen.method, seen.body_len), (Method::POST, 7));
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    for _ in 0..20 {
        assert_eq!(get(p.addr, "/").await.0, StatusCode::OK);
    }
    assert_eq!(b.hits(), 20);
    assert_eq!(
        b.connections(),
        1,
        "one keep-alive upstream connection serves every request"
    );
}

#[tokio::test]
async fn upstream_status_and_headers_come_back() {
    let b = Backend::http("a").status(418).start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    assert_eq!(
        get(p.addr, "/").await,
        (StatusCode::IM_A_TEAPOT, "backend a".into())
    );
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    let io = TcpStream::connect(p.addr).await.unwrap();
    let req = Request::get("http://hub.test:8000/h2?q=1")
        .body(Full::default())
        .unwrap();
    let resp = send_h2(io, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body().as_ref(), b"backend a");
    let seen = b.last().await;
    assert_eq!(seen.uri, "/h2?q=1");
    assert_eq!(seen.headers["host"], "hub.test:8000");
}

#[tokio::test]
async fn last_activity_counts_only_successful_responses() {
    let (ok, missing) = (
        Backend::http("ok").start().await,
        Backend::http("missing").status(404).start().await,
    );
    let p = TestProxy::start().await;
    let old = "2020-01-01T00:00:00.000Z";
    let json = format!(
        r#"{{"/ok":{{"target":"{}","last_activity":"{old}"}},"/missing":{{"target":"{}","last_activity":"{old}"}},"/dead":{{"target":"http://127.0.0.1:1","last_activity":"{old}"}}}}"#,
        ok.url(),
        missing.url()
    );
    p.routes.restore_api_routes(json.as_bytes()).await.unwrap();
    get(p.addr, "/ok").await;
    get(p.addr, "/missing").await;
    get(p.addr, "/dead").await;
    let table = p.routes.load();
    let activity = |k: &str| {
        table
            .get(hubgate_proxy::Layer::Api, k)
            .unwrap()
            .last_activity_ms()
    };
    assert!(activity("/ok") > 1_600_000_000_000, "a 200 counts");
    assert_eq!(activity("/missing"), 1_577_836_800_000, "a 404 does not");
    assert_eq!(activity("/dead"), 1_577_836_800_000, "a 503 does not");
}

#[tokio::test]
async fn metrics_endpoint() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    get(p.addr, "/").await;
    p.add_route("/dead", "http://127.0.0.1:1").await;
    get(p.addr, "/dead").await;
    let endpoint = Arc::new(MetricsEndpoint {
        metrics: p.proxy.metrics().clone(),
        routes: p.routes.clone(),
        extra: None,
    });
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        ServeConfig::default(),
        endpoint,
        p.shutdown.clone(),
    ));
    let (s, text) = get(addr, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    for line in [
        "hubgate_requests_total{status=\"200\"} 1",
        "hubgate_requests_total{status=\"503\"} 1",
        "hubgate_proxy_errors_total{failure=\"connect\"} 1",
        "hubgate_api_requests_total{status=\"201\"} 2",
        "hubgate_routes 2",
        "hubgate_request_duration_seconds_count 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(get(addr, "/other").await.0, StatusCode::NOT_FOUND);
}
