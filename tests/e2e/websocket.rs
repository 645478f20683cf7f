//! Websockets through the proxy: echo, survival across route changes and
//! removal, activity, the open-tunnel gauge, backpressure, and a raw upgrade
//! with early bytes and half-close.

use std::time::Duration;

use http::Method;
use tokio::net::TcpStream;

use crate::harness::{Backend, TestProxy, echo, wait_for, websocket};

#[tokio::test]
async fn echo_survives_a_hundred_route_changes() {
    let (ws_a, ws_b) = (
        Backend::websocket_echo("a").start().await,
        Backend::websocket_echo("b").start().await,
    );
    let p = TestProxy::start().await;
    let path = "/user/alice";
    p.add_route(path, &ws_a.url()).await;
    let mut ws = websocket(p.addr, "/user/alice/api/kernels/k1/channels?token=x").await;
    echo(&mut ws, "first").await;
    assert_eq!(
        ws_a.last().await.uri,
        "/user/alice/api/kernels/k1/channels?token=x"
    );

    for i in 0..100 {
        match i % 3 {
            0 => p.add_route(path, &ws_b.url()).await,
            1 => assert_eq!(
                p.api(Method::DELETE, "/api/routes/user/alice", "").await.0,
                204
            ),
            _ => p.add_route(path, &ws_a.url()).await,
        }
        echo(&mut ws, &format!("message {i}")).await;
    }
    assert_eq!(
        p.api(Method::DELETE, "/api/routes/user/alice", "").await.0,
        204
    );
    assert!(p.routes.load().is_empty());
    echo(&mut ws, "after removal").await;
    assert_eq!(ws_a.hits(), 1, "the open websocket was never reconnected");

    p.add_route(path, &ws_b.url()).await;
    let mut second = websocket(p.addr, "/user/alice/terminals/websocket/1").await;
    echo(&mut second, "new tunnel").await;
    assert_eq!(ws_b.hits(), 1, "new websockets follow the new route");
    echo(&mut ws, "old tunnel still open").await;
}

#[tokio::test]
async fn websocket_traffic_counts_as_activity() {
    let ws_backend = Backend::websocket_echo("a").start().await;
    let p = TestProxy::start().await;
    let json = format!(
        r#"{{"/user/a":{{"target":"{}","last_activity":"2020-01-01T00:00:00.000Z"}}}}"#,
        ws_backend.url()
    );
    p.routes.restore_api_routes(json.as_bytes()).await.unwrap();
    let activity = || {
        p.routes
            .load()
            .get(hubgate_proxy::Layer::Api, "/user/a")
            .unwrap()
            .last_activity_ms()
    };
    let mut ws = websocket(p.addr, "/user/a/api/kernels/1/channels").await;
    let before = activity();
    echo(&mut ws, "ping").await;
    assert!(activity() > before.max(1_600_000_000_000));
}

#[tokio::test]
async fn open_tunnels_are_counted_and_released() {
    let ws_backend = Backend::websocket_echo("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &ws_backend.url()).await;
    let mut sockets = Vec::new();
    for i in 0..5 {
        let mut ws = websocket(p.addr, "/ws").await;
        echo(&mut ws, &i.to_string()).await;
        sockets.push(ws);
    }
    let metrics = p.proxy.metrics().clone();
    wait_for(Duration::from_secs(5), "5 open tunnels", || async {
        metrics.open_websockets() == 5
    })
    .await;
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
    wait_for(Duration::from_secs(5), "tunnels to close", || async {
        metrics.open_websockets() == 0
    })
    .await;
}

#[tokio::test]
async fn large_messages_pass_under_backpressure() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_backend = Backend::websocket_echo("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &ws_backend.url()).await;
    let mut ws = websocket(p.addr, "/big").await;
    let payload: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    for _ in 0..3 {
        ws.send(Message::binary(payload.clone())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_data().as_ref(), payload.as_slice());
    }
}

#[tokio::test]
async fn raw_upgrade_with_early_bytes_and_half_close() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // An upgraded protocol that counts bytes until the client half-closes,
    // then answers and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let head_end = loop {
            let n = s.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: count\r\n\r\n",
        )
        .await
        .unwrap();
        let mut count = seen.len() - head_end;
        loop {
            match s.read(&mut buf).await.unwrap() {
                0 => break,
                n => count += n,
            }
        }
        s.write_all(format!("got {count} bytes").as_bytes())
            .await
            .unwrap();
    });
    let p = TestProxy::start().await;
    p.add_route("/", &format!("http://{upstream}")).await;

    let mut c = TcpStream::connect(p.addr).await.unwrap();
    // The first bytes of the new protocol ride along with the request.
    c.write_all(
        b"GET /count HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: count\r\n\r\nearly",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let body = vec![7u8; 1 << 20];
    c.write_all(&body).await.unwrap();
    c.shutdown().await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, format!("got {} bytes", 5 + (1 << 20)));
}
