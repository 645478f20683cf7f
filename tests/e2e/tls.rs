//! TLS: static certificates, ALPN h2, the live resolver swap, HTTPS
//! upstreams, and the HTTP-to-HTTPS redirect listener.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hubgate_proxy::ProxyConfig;
use hubgate_proxy::tls::{self, CertResolver, CertSet, UpstreamTls};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Backend, Hubgate, TestProxy, fixture, get_host, send_h2};

fn server_key() -> Arc<rustls::sign::CertifiedKey> {
    let cert = std::fs::read(fixture("localhost.pem")).unwrap();
    let key = std::fs::read(fixture("localhost.key")).unwrap();
    Arc::new(tls::certified_key(&cert, &key).unwrap())
}

fn client(alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

use rustls_pki_types::pem::PemObject as _;

async fn tls_stream(
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    client(alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// `GET path` over a new HTTPS/1.1 connection to `addr` (for `localhost`).
async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let io = tls_stream(addr, &[b"http/1.1"]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Full::<Bytes>::default())
        .unwrap();
    sender.send_request(req).await.unwrap()
}

async fn tls_proxy(resolver: Arc<CertResolver>) -> TestProxy {
    let config = tls::server_config(resolver, None).unwrap();
    TestProxy::with_tls(ProxyConfig::default(), false, Some(config)).await
}

#[tokio::test]
async fn https_with_http11_and_h2_over_alpn() {
    let b = Backend::http("a").start().await;
    let p = tls_proxy(Arc::new(CertResolver::new(CertSet::single(server_key())))).await;
    p.add_route("/", &b.url()).await;

    let resp = https_get(p.addr, "/one").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = b.last().await;
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-port"], "443");

    let io = tls_stream(p.addr, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let resp = send_h2(
        io,
        Request::get("https://localhost/two")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (resp.status(), resp.body().as_ref()),
        (StatusCode::OK, &b"backend a"[..])
    );
    assert_eq!(b.last().await.uri, "/two");
}

#[tokio::test]
async fn certificates_swap_live() {
    let resolver = Arc::new(CertResolver::new(CertSet::default()));
    let p = tls_proxy(resolver.clone()).await;
    assert!(tls_stream(p.addr, &[]).await.is_err(), "no certificate yet");
    let mut set = CertSet::default();
    set.insert("localhost", server_key());
    resolver.store(set);
    assert!(
        tls_stream(p.addr, &[]).await.is_ok(),
        "served right after the swap, no restart"
    );
}

#[tokio::test]
async fn https_upstream_verified_against_a_configured_ca() {
    let b = Backend::http("behind-tls").start().await;
    let inner = tls_proxy(Arc::new(CertResolver::new(CertSet::single(server_key())))).await;
    inner.add_route("/", &b.url()).await;

    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    let upstream_tls = tls::client_config(&UpstreamTls {
        ca_pem: Some(&ca),
        ..Default::default()
    })
    .unwrap();
    let outer = TestProxy::with(
        ProxyConfig {
            upstream_tls: Some(upstream_tls),
            ..ProxyConfig::default()
        },
        false,
    )
    .await;
    outer
        .add_route("/", &format!("https://localhost:{}", inner.addr.port()))
        .await;
    assert_eq!(
        get_host(outer.addr, "/", "x").await,
        (StatusCode::OK, "backend behind-tls".into())
    );

    // Without the CA the upstream certificate is refused: 503, not a silent pass.
    let strict = TestProxy::start().await;
    strict
        .add_route("/", &format!("https://localhost:{}", inner.addr.port()))
        .await;
    assert_eq!(
        get_host(strict.addr, "/", "x").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn binary_serves_tls_and_redirects_plain_http() {
    let b = Backend::http("a").start().await;
    let redirect_port = crate::harness::free_port();
    let (cert, key) = (fixture("localhost.pem"), fixture("localhost.key"));
    let hg = Hubgate::spawn(&[
        "--ssl-cert",
        cert.to_str().unwrap(),
        "--ssl-key",
        key.to_str().unwrap(),
        "--redirect-port",
        &redirect_port.to_string(),
        "--redirect-to",
        "443",
        "--default-target",
        &b.url(),
    ])
    .await;
    let io = tls_stream(hg.addr(), &[b"h2"]).await.unwrap();
    let resp = send_h2(
        io,
        Request::get("https://localhost/x")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let plain = std::net::SocketAddr::from(([127, 0, 0, 1], redirect_port));
    let req = Request::get("/user/a?x=1")
        .header("host", "hub.example.org:80")
        .body(Full::default())
        .unwrap();
    let resp = crate::harness::send(plain, req).await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        resp.headers()["location"],
        "https://hub.example.org/user/a?x=1"
    );
    let resp = crate::harness::send(plain, Request::get("/").body(Full::default()).unwrap()).await;
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "no Host, no redirect"
    );
}

#[tokio::test]
async fn websockets_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_backend = Backend::websocket_echo("a").start().await;
    let p = tls_proxy(Arc::new(CertResolver::new(CertSet::single(server_key())))).await;
    p.add_route("/", &ws_backend.url()).await;
    let io = tls_stream(p.addr, &[b"http/1.1"]).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/user/a/terminals/websocket/1", io)
            .await
            .unwrap();
    for i in 0..20 {
        ws.send(Message::text(format!("over tls {i}")))
            .await
            .unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("over tls {i}"));
    }
    assert_eq!(ws_backend.last().await.headers["x-forwarded-proto"], "wss");
}

#[tokio::test]
async fn hsts_on_https_responses_only() {
    let b = Backend::http("a").start().await;
    let config = tls::server_config(
        Arc::new(CertResolver::new(CertSet::single(server_key()))),
        None,
    )
    .unwrap();
    let proxy_config = ProxyConfig {
        hsts: Some(http::HeaderValue::from_static("max-age=31536000")),
        ..ProxyConfig::default()
    };
    let p = TestProxy::with_tls(proxy_config.clone(), false, Some(config)).await;
    p.add_route("/", &b.url()).await;
    let resp = https_get(p.addr, "/").await;
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    // Plain HTTP never gets it (RFC 6797 §7.2).
    let plain = TestProxy::with(proxy_config, false).await;
    plain.add_route("/", &b.url()).await;
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Full::default())
        .unwrap();
    assert!(
        !crate::harness::send(plain.addr, req)
            .await
            .headers()
            .contains_key("strict-transport-security")
    );
}
