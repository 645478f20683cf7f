//! Upstream responses as they come off the wire: every body framing, early
//! hints, HEAD, connection reuse, stale keep-alive connections, and upstreams
//! that break the protocol (502, the proxy keeps serving).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::harness::*;

async fn proxy_to(backend: &Scripted) -> TestProxy {
    let p = TestProxy::start().await;
    p.add_route("/", &backend.url()).await;
    p
}

/// `times` GETs through a proxy to `backend`, pausing between them, each
/// expecting 200 and `body`; returns the connections the backend accepted.
async fn get_times(backend: ScriptedBuilder, times: usize, pause: Duration, body: &str) -> usize {
    let b = backend.start().await;
    let p = proxy_to(&b).await;
    for round in 0..times {
        let got = get(p.addr, "/").await;
        assert_eq!(got, (StatusCode::OK, body.to_owned()), "round {round}");
        tokio::time::sleep(pause).await;
    }
    b.connections()
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers() {
    let reply = Scripted::reply(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
           5;note=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"[..],
    );
    let conns = get_times(reply, 3, Duration::ZERO, "hello world").await;
    assert_eq!(conns, 1, "the connection is reused after the last chunk");
}

#[tokio::test]
async fn content_length_body_reuses_the_connection() {
    let reply = Scripted::reply(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
    assert_eq!(get_times(reply, 3, Duration::ZERO, "hello").await, 1);
}

#[tokio::test]
async fn body_until_close_is_passed_on_whole() {
    let reply = Scripted::reply(&b"HTTP/1.1 200 OK\r\n\r\nread me until the end"[..])
        .close_after(Duration::ZERO);
    let conns = get_times(reply, 2, Duration::ZERO, "read me until the end").await;
    assert_eq!(conns, 2, "a close-delimited body ends its connection");
}

#[tokio::test]
async fn early_hints_are_skipped_for_the_final_response() {
    let b = Scripted::reply(
        &b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
           HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"[..],
    )
    .start()
    .await;
    let p = proxy_to(&b).await;
    assert_eq!(get(p.addr, "/").await, (StatusCode::CREATED, "ok".into()));
}

#[tokio::test]
async fn head_response_has_no_body_to_wait_for() {
    let b = Scripted::reply(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..])
        .start()
        .await;
    let p = proxy_to(&b).await;
    for _ in 0..2 {
        let req = Request::head("/")
            .header("host", "h")
            .body(Full::default())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), send(p.addr, req))
            .await
            .expect("HEAD answered");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-length"], "5");
    }
    assert_eq!(b.connections(), 1);
}

#[tokio::test]
async fn a_keep_alive_connection_the_upstream_closed_is_replaced() {
    // The reply promises keep-alive, then the upstream closes right away;
    // the pause lets the FIN arrive while the connection sits in the pool.
    let reply = Scripted::reply(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..])
        .close_after(Duration::ZERO);
    assert_eq!(
        get_times(reply, 5, Duration::from_millis(20), "ok").await,
        5
    );
}

#[tokio::test]
async fn a_pooled_connection_closed_mid_request_is_retried() {
    // The upstream closes without answering the second request on a
    // connection: the proxy must not turn that race into a 502.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Read the next request, then hang up without a reply.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let p = TestProxy::start().await;
    p.add_route("/", &format!("http://{addr}")).await;
    for round in 0..3 {
        assert_eq!(
            get(p.addr, "/").await,
            (StatusCode::OK, "ok".into()),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn protocol_violations_are_502_and_the_proxy_keeps_serving() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad status line", b"HTTP/1.1 abc\r\n\r\n".to_vec()),
        (
            "conflicting lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok".to_vec(),
        ),
        (
            "bad length",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
        ),
        ("head too large", huge.into_bytes()),
        (
            "101 unasked",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
        ),
    ];
    let good = Backend::http("good").start().await;
    for (what, reply) in cases {
        let b = Scripted::reply(reply).start().await;
        let p = proxy_to(&b).await;
        p.add_route("/good", &good.url()).await;
        let got = tokio::time::timeout(Duration::from_secs(5), get(p.addr, "/"))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer"));
        assert_eq!(got.0, StatusCode::BAD_GATEWAY, "{what}");
        assert_eq!(get(p.addr, "/good").await.0, StatusCode::OK, "{what}");
    }
}

/// Whether a GET through `p` gets a whole response, head and body.
async fn whole_response(p: &TestProxy) -> bool {
    let req = Request::get("/")
        .header("host", "h")
        .body(Full::<Bytes>::default())
        .unwrap();
    match h1(p.addr).await.send_request(req).await {
        Ok(resp) => resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_body_cut_short_reaches_the_client_as_an_error() {
    let b = Scripted::reply(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..])
        .close_after(Duration::ZERO)
        .start()
        .await;
    let p = proxy_to(&b).await;
    assert!(
        !whole_response(&p).await,
        "a short body must not look complete"
    );
}

#[tokio::test]
async fn malformed_chunks_end_the_response_with_an_error() {
    let b = Scripted::reply(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
    )
    .start()
    .await;
    let p = proxy_to(&b).await;
    // The error comes before the first byte of the body, so the client sees
    // the connection end before (or instead of) a complete response.
    assert!(
        !whole_response(&p).await,
        "a malformed body must not look complete"
    );
    let good = Backend::http("good").start().await;
    p.add_route("/good", &good.url()).await;
    assert_eq!(
        get(p.addr, "/good").await.0,
        StatusCode::OK,
        "the proxy keeps serving"
    );
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_response() {
    let b = Scripted::reply(&b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"[..])
        .start()
        .await;
    let p = proxy_to(&b).await;
    let req = Request::get("/ws")
        .header("host", "h")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send(p.addr, req).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.body().as_ref(), b"nope");
    assert_eq!(p.proxy.metrics().open_websockets(), 0);
}
