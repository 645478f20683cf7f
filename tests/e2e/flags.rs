//! Every forwarding and timeout flag through the binary: each assertion
//! fails if the flag's wiring is dropped or inverted.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{
    Backend, Hubgate, TOKEN, api_call, closed_within, fixture, get, get_host, raw_exchange, send,
    statuses,
};

async fn add_route(hg: &Hubgate, path: &str, target: &str) {
    let body = serde_json::json!({ "target": target }).to_string();
    let (status, text) = api_call(
        hg.api_addr(),
        Method::POST,
        &format!("/api/routes{path}"),
        &body,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

/// An HTTPS server with the test CA's `localhost` certificate: hubgate
/// itself, in front of `backend`.
async fn https_upstream(backend: &Backend) -> Hubgate {
    let (cert, key) = (fixture("localhost.pem"), fixture("localhost.key"));
    Hubgate::spawn(&[
        "--ssl-cert",
        cert.to_str().unwrap(),
        "--ssl-key",
        key.to_str().unwrap(),
        "--default-target",
        &backend.url(),
    ])
    .await
}

#[tokio::test]
async fn path_header_body_error_and_keep_alive_flags() {
    let backend = Backend::http("b").start().await;
    let slow = Backend::http("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let pages = tempfile::tempdir().unwrap();
    std::fs::write(pages.path().join("404.html"), "custom not found").unwrap();
    let hg = Hubgate::spawn(&[
        "--no-include-prefix",
        "--no-prepend-path",
        "--change-origin",
        "--custom-header",
        "x-from-hub: yes",
        "--proxy-timeout",
        "500",
        "--max-body-size",
        "10",
        "--error-path",
        pages.path().to_str().unwrap(),
        "--keep-alive-timeout",
        "300",
    ])
    .await;
    add_route(&hg, "/pre", &format!("{}/base", backend.url())).await;
    add_route(&hg, "/slow", &slow.url()).await;

    // --no-include-prefix drops `/pre`, --no-prepend-path drops `/base`,
    // --change-origin sends the target's host, --custom-header adds its own.
    assert_eq!(
        get_host(hg.addr(), "/pre/x?q=1", "public.example").await.0,
        200
    );
    let seen = backend.last().await;
    assert_eq!(seen.uri, "/x?q=1");
    assert_eq!(seen.headers["host"], backend.addr.to_string().as_str());
    assert_eq!(seen.headers["x-from-hub"], "yes");

    // --proxy-timeout: a 504 (without it the backend's 3 s answer is a 200).
    assert_eq!(get(hg.addr(), "/slow").await.0, StatusCode::GATEWAY_TIMEOUT);

    // --max-body-size: 11 bytes is one too many.
    let post = |n: usize| {
        Request::post("/pre/upload")
            .header("host", "h")
            .body(Full::new(Bytes::from(vec![b'a'; n])))
            .unwrap()
    };
    assert_eq!(
        send(hg.addr(), post(11)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(send(hg.addr(), post(10)).await.status(), StatusCode::OK);

    // --error-path: the 404 page from the directory.
    let (status, body) = get(hg.addr(), "/unrouted").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "custom not found")
    );

    // --keep-alive-timeout: an idle connection closes after ~300 ms.
    let mut s = TcpStream::connect(hg.addr()).await.unwrap();
    s.write_all(b"GET /pre/k HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let t = closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(
        t.is_some(),
        "idle connection open past --keep-alive-timeout"
    );
}

#[tokio::test]
async fn host_routing_insecure_and_socket_timeout_flags() {
    let backend = Backend::http("b").start().await;
    let tls = https_upstream(&backend).await;
    let stalled = Backend::http("stalled")
        .delay(Duration::from_secs(10))
        .start()
        .await;
    let hg = Hubgate::spawn(&["--host-routing", "--insecure", "--timeout", "700"]).await;
    add_route(&hg, "/hub.test", &backend.url()).await;
    add_route(&hg, "/tls.test", &format!("https://localhost:{}", tls.port)).await;
    add_route(&hg, "/stall.test", &stalled.url()).await;

    // --host-routing: the Host picks the route.
    assert_eq!(get_host(hg.addr(), "/x", "hub.test").await.0, 200);
    assert_eq!(get_host(hg.addr(), "/x", "other.test").await.0, 404);

    // --insecure: the test CA's certificate is accepted...
    assert_eq!(get_host(hg.addr(), "/x", "tls.test").await.0, 200);
    // ...which it is not without the flag.
    let strict = Hubgate::spawn(&[]).await;
    add_route(&strict, "/", &format!("https://localhost:{}", tls.port)).await;
    assert_eq!(
        get(strict.addr(), "/").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // --client-ssl-ca trusts exactly that CA.
    let ca = fixture("ca.pem");
    let trusting = Hubgate::spawn(&["--client-ssl-ca", ca.to_str().unwrap()]).await;
    add_route(&trusting, "/", &format!("https://localhost:{}", tls.port)).await;
    assert_eq!(get(trusting.addr(), "/").await.0, StatusCode::OK);

    // --timeout: a request whose socket stays silent is cut after ~700 ms.
    let mut s = TcpStream::connect(hg.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: stall.test\r\n\r\n")
        .await
        .unwrap();
    let t = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(t.is_some(), "a silent socket outlived --timeout");
    eprintln!(
        "--timeout 700 closed the silent request after {:?}",
        t.unwrap()
    );
}

#[tokio::test]
async fn limit_flags_and_a_taken_port() {
    let backend = Backend::http("b").start().await;
    let hg = Hubgate::spawn(&[
        "--default-target",
        &backend.url(),
        "--max-request-line",
        "1k",
        "--max-headers",
        "20",
        "--max-connections-per-client",
        "3",
    ])
    .await;
    let long = "a".repeat(1100);
    let reply = raw_exchange(
        hg.addr(),
        format!("GET /{long} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&reply), [414]);
    let fields: String = (0..25).map(|i| format!("x-{i}: v\r\n")).collect();
    let reply = raw_exchange(
        hg.addr(),
        format!("GET / HTTP/1.1\r\nhost: h\r\n{fields}connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&reply), [431]);
    // Per client and worker: with one connection per worker held open, a
    // fourth on the worker that already has three is refused. Workers
    // split connections unpredictably, so hold enough to fill one.
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..16 {
        let reply = raw_exchange_keep(&mut held, hg.addr()).await;
        if reply.starts_with("HTTP/1.1 503") {
            refused = true;
            break;
        }
    }
    assert!(refused, "--max-connections-per-client never refused");

    // A second hubgate on the same port fails its start, naming the port.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args(["serve", "--ip", "127.0.0.1", "--port", &hg.port.to_string()])
        .args(["--api-port", &crate::harness::free_port().to_string()])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("another process"), "{stderr}");
}

/// Opens a connection, sends a request, keeps the stream in `held` and
/// returns what came back first.
async fn raw_exchange_keep(held: &mut Vec<TcpStream>, addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    held.push(s);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn log_lines_have_no_colour_codes_off_a_terminal() {
    let api_port = crate::harness::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "serve",
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "debug",
        ])
        .args(["--api-port", &api_port.to_string()])
        .args(["--default-target", "http://127.0.0.1:1"])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let api: std::net::SocketAddr = ([127, 0, 0, 1], api_port).into();
    crate::harness::wait_for(Duration::from_secs(10), "hubgate to listen", || async {
        TcpStream::connect(api).await.is_ok()
    })
    .await;
    let status = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hubgate proxying"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in a pipe: {stderr:?}"
    );
}
