//! The inline HTTP/1.1 server and its hand-off to hyper: plain `GET`s are
//! answered inline, anything else on the same connection goes to hyper with
//! the bytes already read, and nothing is lost or reordered on the way.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::*;

/// Reads from `stream` until what came ends with `end` (one whole response
/// of the recorder's, which answers `ok` with a length).
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(end) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn pipelined_requests_switching_to_hyper_mid_connection_are_answered_in_order() {
    let proxy = TestProxy::start().await;
    let backend = Recorder::start().await;
    proxy.add_route("/", &backend.url()).await;
    // Two plain GETs (inline), a POST with a body (hyper from here on, with
    // the bytes read after it), a GET, all in one write.
    let reply = raw_exchange(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: h\r\n\r\n\
          POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
          GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&reply), [200, 200, 200, 200], "{reply}");
    let heads = backend.heads().await;
    let lines: Vec<&str> = heads.iter().map(|h| h.lines().next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "get /a http/1.1",
            "get /b http/1.1",
            "post /c http/1.1",
            "get /d http/1.1"
        ]
    );
    assert!(backend.bytes().await.contains("\r\n\r\nabc"));
    backend.assert_only_proxied().await;
}

#[tokio::test]
async fn a_websocket_after_a_plain_request_on_the_same_connection_tunnels() {
    let proxy = TestProxy::start().await;
    let plain = Recorder::start().await;
    let ws = Backend::websocket_echo("ws").start().await;
    proxy.add_route("/plain", &plain.url()).await;
    proxy.add_route("/ws", &ws.url()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // The recorder answers `ok` with a length: read exactly that response.
    let got = read_until(&mut stream, b"\r\n\r\nok").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{}/ws", proxy.addr), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    echo(&mut ws, "after a plain request").await;
}

#[tokio::test]
async fn connection_close_is_said_and_done_and_keep_alive_is_kept() {
    let proxy = TestProxy::start().await;
    let backend = Recorder::start().await;
    proxy.add_route("/", &backend.url()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut stream, b"\r\n\r\nok").await;
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.contains("\r\ncontent-length: 2\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
    }
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "not closed after Connection: close");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert_eq!(statuses(&text), [200]);
    assert_eq!(backend.heads().await.len(), 4);
}

#[tokio::test]
async fn a_streamed_body_of_unknown_length_goes_out_chunked() {
    let proxy = TestProxy::start().await;
    let backend = Backend::http("dl").download(100_000).start().await;
    proxy.add_route("/", &backend.url()).await;
    let reply = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    // Decode the chunks: 100,000 zero bytes in all, then the last chunk.
    let (mut rest, mut total) = (body, 0);
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        total += size;
        rest = &after[size + 2..];
    }
    assert_eq!(total, 100_000);
}

#[tokio::test]
async fn upstream_fields_are_copied_without_the_hop_by_hop_ones() {
    let proxy = TestProxy::start().await;
    // Copied straight from the upstream's head: names as it spelled them,
    // repeated fields in order, its Date kept; its own framing and
    // connection fields dropped (the client's framing is the proxy's).
    let plain = Scripted::reply(
        "HTTP/1.1 200 OK\r\nX-A:  1 \r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\n\
         Keep-Alive: timeout=5\r\nSet-Cookie: b=2\r\nTransfer-Encoding: chunked\r\n\
         Trailer: x-t\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nDate: Upstream\r\n\r\n\
         5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .start()
    .await;
    // `Connection` naming a field makes that field hop-by-hop too.
    let naming = Scripted::reply(
        "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-B: 2\r\n\
         Content-Length: 2\r\n\r\nok",
    )
    .start()
    .await;
    proxy.add_route("/plain", &plain.url()).await;
    proxy.add_route("/naming", &naming.url()).await;
    let reply = raw_exchange(
        proxy.addr,
        b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\nGET /naming HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (first, second) = reply.split_at(reply.rfind("HTTP/1.1 200").unwrap());
    let (head, body) = first.split_once("\r\n\r\n").unwrap();
    let fields: Vec<&str> = head.lines().skip(1).collect();
    assert_eq!(
        fields,
        [
            "X-A: 1",
            "Set-Cookie: a=1",
            "Set-Cookie: b=2",
            "Date: Upstream",
            "transfer-encoding: chunked"
        ],
        "{reply}"
    );
    assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n");
    let second = second.to_ascii_lowercase();
    assert!(second.contains("\r\nx-b: 2\r\n"), "{second}");
    assert!(!second.contains("x-secret"), "{second}");
    assert!(second.ends_with("\r\n\r\nok"), "{second}");
}
