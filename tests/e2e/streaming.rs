//! Large bodies stream through the `hubgate` binary both ways with flat
//! memory, and shutdown lets in-flight requests finish.

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpStream;

use crate::harness::{
    Backend, Hubgate, TestProxy, drain_body, echo, get, h1, stream_zeros, wait_for, websocket,
};

const TWO_GIB: u64 = 2 << 30;
/// Far below the body size: a buffered body would blow through it.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_up_and_down_with_flat_memory() {
    let upload_sink = Backend::http("sink").start().await;
    let download_source = Backend::http("source").download(TWO_GIB).start().await;
    let hg = Hubgate::spawn(&["--workers", "1"]).await;
    let api = crate::harness::api_call;
    for (path, target) in [("/up", upload_sink.url()), ("/down", download_source.url())] {
        let body = serde_json::json!({ "target": target }).to_string();
        assert_eq!(
            api(
                hg.api_addr(),
                http::Method::POST,
                &format!("/api/routes{path}"),
                &body,
                Some(crate::harness::TOKEN)
            )
            .await
            .0,
            StatusCode::CREATED
        );
    }

    let started = Instant::now();
    let mut sender = h1(hg.addr()).await;
    let up = Request::post("/up")
        .header("host", "h")
        .body(stream_zeros(TWO_GIB))
        .unwrap();
    let resp = sender.send_request(up).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drain_body(resp.into_body()).await;
    assert_eq!(upload_sink.last().await.body_len, TWO_GIB);
    let upload_time = started.elapsed();

    let started = Instant::now();
    let mut sender = h1(hg.addr()).await;
    let down = Request::get("/down")
        .header("host", "h")
        .body(Full::<bytes::Bytes>::default())
        .unwrap();
    let resp = sender.send_request(down).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(drain_body(resp.into_body()).await, TWO_GIB);
    let download_time = started.elapsed();

    let peak = hg.peak_rss_kib();
    eprintln!(
        "2 GiB upload {upload_time:?}, download {download_time:?}, proxy peak RSS {peak} KiB"
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "proxy peak RSS {peak} KiB: bodies must stream, not buffer"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_closes_tunnels() {
    let slow = Backend::http("slow")
        .delay(Duration::from_millis(700))
        .start()
        .await;
    let ws_backend = Backend::websocket_echo("ws").start().await;
    let p = TestProxy::start().await;
    p.add_route("/slow", &slow.url()).await;
    p.add_route("/ws", &ws_backend.url()).await;
    let mut ws = websocket(p.addr, "/ws").await;
    echo(&mut ws, "before").await;

    let addr = p.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    wait_for(
        Duration::from_secs(5),
        "the request to reach the backend",
        || async { slow.hits() == 1 },
    )
    .await;
    let shutdown = p.shutdown.clone();
    let drained = tokio::spawn(async move { shutdown.drain(Duration::from_secs(5)).await });
    wait_for(
        Duration::from_secs(5),
        "new connections to be refused",
        || async { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request is still running"
    );

    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "backend slow".into())
    );
    tokio::time::timeout(Duration::from_secs(3), drained)
        .await
        .expect("drain finished")
        .unwrap();
    use futures_util::StreamExt;
    let next = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("tunnel closed");
    assert!(
        !matches!(next, Some(Ok(m)) if m.is_text()),
        "the tunnel is closed after the grace period"
    );
}
