//! Failure paths: each gives a clear status, and none loses a route.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hubgate_proxy::{ErrorPages, ProxyConfig};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Backend, TestProxy, get, h1, send, wait_for};

#[tokio::test]
async fn dead_backend_is_503_with_a_page_and_keeps_the_route() {
    let p = TestProxy::start().await;
    let dead = Backend::http("dead").start().await;
    let url = dead.url();
    dead.stop();
    let addr = dead.addr;
    crate::harness::wait_for(
        Duration::from_secs(5),
        "the backend to stop",
        || async move { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    p.add_route("/user/gone", &url).await;
    let (status, body) = get(p.addr, "/user/gone/lab").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("503 Service Unavailable"), "{body}");
    assert!(p.routes.load().len() == 1, "the route stays");
}

#[tokio::test]
async fn slow_backend_times_out_with_504() {
    let slow = Backend::http("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let config = ProxyConfig {
        proxy_timeout: Some(Duration::from_millis(200)),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    p.add_route("/", &slow.url()).await;
    assert_eq!(get(p.addr, "/").await.0, StatusCode::GATEWAY_TIMEOUT);
    // With a body (hyper's client, not the inline exchange) likewise.
    assert_eq!(
        send(p.addr, post("/")).await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
}

/// A POST with a small body.
fn post(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "h")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

/// A backend that stalls mid-body is cut off after `--proxy-timeout`
/// without bytes, on both upstream paths (the inline exchange for a GET,
/// hyper's client for a POST).
#[tokio::test]
async fn a_backend_stalling_mid_body_is_cut_after_the_proxy_timeout() {
    let stalled =
        crate::harness::Scripted::reply("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            .close_after(Duration::from_secs(30))
            .start()
            .await;
    let config = ProxyConfig {
        proxy_timeout: Some(Duration::from_millis(500)),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    p.add_route("/", &stalled.url()).await;
    for method in [http::Method::GET, http::Method::POST] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/stall")
            .header("host", "h")
            .body(match method {
                http::Method::GET => Full::default(),
                _ => Full::new(Bytes::from_static(b"x")),
            })
            .unwrap();
        let resp = h1(p.addr).await.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
        assert!(
            matches!(body, Ok(Err(_))),
            "{method}: a stalled body was not cut: {body:?}"
        );
    }
}

/// A request with a body never goes out on a pooled connection the backend
/// has closed meanwhile (the body would be lost with it).
#[tokio::test]
async fn a_body_survives_a_pooled_connection_the_backend_closed() {
    let p = TestProxy::start().await;
    // A backend that closes each connection 100 ms after answering.
    let closing = crate::harness::Scripted::reply("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .close_after(Duration::from_millis(100))
        .start()
        .await;
    p.add_route("/closing", &closing.url()).await;
    let mut client = h1(p.addr).await;
    for round in 0..3 {
        let resp = client.send_request(post("/closing")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        // The backend has closed it: the pooled connection is dead.
        wait_for(Duration::from_secs(5), "the backend to close", || async {
            closing.closed() > round
        })
        .await;
    }
    assert_eq!(closing.connections(), 3);
}

#[tokio::test]
async fn broken_upstream_is_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"this is not HTTP\r\n\r\n").await;
        }
    });
    let p = TestProxy::start().await;
    p.add_route("/", &format!("http://{addr}")).await;
    assert_eq!(get(p.addr, "/").await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn error_target_serves_the_page_with_the_original_status() {
    let hub = Backend::http("hub-error-page").start().await;
    let config = ProxyConfig {
        error_target: Some(format!("{}/hub/error", hub.url())),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    p.add_route("/user/gone", "http://127.0.0.1:1").await;
    assert_eq!(
        get(p.addr, "/nothing/here?a=b").await,
        (StatusCode::NOT_FOUND, "backend hub-error-page".into())
    );
    assert_eq!(
        hub.last().await.uri,
        "/hub/error/404?url=%2Fnothing%2Fhere%3Fa%3Db"
    );
    assert_eq!(
        get(p.addr, "/user/gone/x").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        hub.last().await.uri,
        "/hub/error/503?url=%2Fuser%2Fgone%2Fx"
    );
}

#[tokio::test]
async fn unreachable_error_target_falls_back_to_a_local_page() {
    let config = ProxyConfig {
        error_target: Some("http://127.0.0.1:1/hub/error".into()),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    let (status, body) = get(p.addr, "/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("404 Not Found"));
}

/// A hub that accepts but never answers: each failing request gets the
/// built-in page after the error target's short timeout, and the next ones
/// at once while it counts as down.
#[tokio::test]
async fn a_stalled_error_target_costs_one_short_timeout() {
    let hub = Backend::http("hub")
        .delay(Duration::from_secs(60))
        .start()
        .await;
    let config = ProxyConfig {
        error_target: Some(format!("{}/hub/error", hub.url())),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    // Well before the 10 s connect timeout the old code waited for.
    let (status, body) = tokio::time::timeout(Duration::from_secs(8), get(p.addr, "/nowhere"))
        .await
        .expect("the failing request waited for the dead error target");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("404 Not Found"), "{body}");
    assert_eq!(hub.hits(), 1);
    // While it counts as down it is not asked again.
    assert_eq!(get(p.addr, "/nowhere").await.0, StatusCode::NOT_FOUND);
    assert_eq!(hub.hits(), 1, "asked the dead error target again");
}

#[tokio::test]
async fn error_pages_from_files() {
    let pages = ErrorPages::new(
        HashMap::from([(404, Bytes::from_static(b"custom 404"))]),
        Some(Bytes::from_static(b"any error")),
    );
    let p = TestProxy::with(
        ProxyConfig {
            error_pages: pages,
            ..ProxyConfig::default()
        },
        false,
    )
    .await;
    assert_eq!(
        get(p.addr, "/x").await,
        (StatusCode::NOT_FOUND, "custom 404".into())
    );
    p.add_route("/dead", "http://127.0.0.1:1").await;
    assert_eq!(
        get(p.addr, "/dead").await,
        (StatusCode::SERVICE_UNAVAILABLE, "any error".into())
    );
}

#[tokio::test]
async fn websocket_errors_are_bare_statuses() {
    let hub = Backend::http("hub").start().await;
    let config = ProxyConfig {
        error_target: Some(format!("{}/hub/error", hub.url())),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with(config, false).await;
    p.add_route("/dead", "http://127.0.0.1:1").await;
    let req = Request::get("/dead/api/kernels/1/channels")
        .header("host", "h")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::default())
        .unwrap();
    let resp = send(p.addr, req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.body().is_empty());
    assert_eq!(hub.hits(), 0, "no error page is fetched for websockets");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::with(
        ProxyConfig {
            max_body_size: Some(1000),
            ..ProxyConfig::default()
        },
        false,
    )
    .await;
    p.add_route("/", &b.url()).await;
    let big = Full::new(Bytes::from(vec![1u8; 1001]));
    let resp = send(
        p.addr,
        Request::post("/").header("host", "h").body(big).unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        b.hits(),
        0,
        "a declared oversize body is refused before forwarding"
    );
    let ok = Full::new(Bytes::from(vec![1u8; 1000]));
    assert_eq!(
        send(
            p.addr,
            Request::post("/").header("host", "h").body(ok).unwrap()
        )
        .await
        .status(),
        StatusCode::OK
    );

    // Chunked, with no length to check up front: cut off when it passes the limit.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![2u8; 400])))),
    );
    let mut sender = h1(p.addr).await;
    let req = Request::post("/")
        .header("host", "h")
        .body(StreamBody::new(chunks).boxed())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_proxy_keeps_serving() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &b.url()).await;
    let mut raw = TcpStream::connect(p.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nbroken header line\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await;
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(b.hits(), 0);
    assert_eq!(get(p.addr, "/").await.0, StatusCode::OK);
}
