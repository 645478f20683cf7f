//! Hostile requests, each checked on both sides: what the client got and
//! what reached a recording raw backend, and that the proxy still serves a
//! normal request afterwards.

use crate::harness::*;

/// The proxy with `/` on one recorder and alice's and bob's servers on two
/// more.
struct Site {
    proxy: TestProxy,
    hub: Recorder,
    alice: Recorder,
    bob: Recorder,
}

impl Site {
    async fn start() -> Self {
        let proxy = TestProxy::start().await;
        let (hub, alice, bob) = (
            Recorder::start().await,
            Recorder::start().await,
            Recorder::start().await,
        );
        proxy.add_route("/", &hub.url()).await;
        proxy.add_route("/user/alice", &alice.url()).await;
        proxy.add_route("/user/bob", &bob.url()).await;
        Self {
            proxy,
            hub,
            alice,
            bob,
        }
    }

    /// Sends `bytes`; returns the statuses the client got.
    async fn send(&self, bytes: &str) -> Vec<u16> {
        statuses(&raw_exchange(self.proxy.addr, bytes.as_bytes()).await)
    }

    /// Every backend saw only requests the proxy wrote, and the proxy
    /// still answers a plain request.
    async fn assert_sound(&self, case: &str) {
        for r in [&self.hub, &self.alice, &self.bob] {
            r.assert_only_proxied().await;
        }
        let (status, body) = get(self.proxy.addr, "/user/alice/ok").await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "ok"),
            "after {case}"
        );
    }

    async fn all_heads(&self) -> Vec<String> {
        let mut all = self.hub.heads().await;
        all.extend(self.alice.heads().await);
        all.extend(self.bob.heads().await);
        all
    }
}

const END: &str = "connection: close\r\n\r\n";

/// Requests refused before any byte reaches a backend.
#[tokio::test]
async fn ambiguous_requests_are_refused_and_reach_no_backend() {
    let site = Site::start().await;
    let cases: &[(&str, String, u16)] = &[
        (
            "two Host fields",
            format!("GET /x HTTP/1.1\r\nhost: a\r\nhost: b\r\n{END}"),
            400,
        ),
        (
            "no Host in HTTP/1.1",
            format!("GET /x HTTP/1.1\r\n{END}"),
            400,
        ),
        (
            "Host with a slash",
            format!("GET /x HTTP/1.1\r\nhost: a/user/bob\r\n{END}"),
            400,
        ),
        (
            "Host with a space",
            format!("GET /x HTTP/1.1\r\nhost: a b\r\n{END}"),
            400,
        ),
        (
            "dots above the root",
            format!("GET /../x HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "encoded dots above the root",
            format!("GET /%2e%2e/%2E%2E/x HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "dots behind an encoded slash",
            format!("GET /user/alice/..%2Fbob/x HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "two Content-Lengths",
            format!(
                "POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\ncontent-length: 2\r\n{END}ab"
            ),
            400,
        ),
        (
            "a Content-Length list",
            format!("POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 2, 2\r\n{END}ab"),
            400,
        ),
        (
            "Content-Length with a sign",
            format!("POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: +2\r\n{END}ab"),
            400,
        ),
        (
            "Content-Length not a number",
            format!("POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 2x\r\n{END}ab"),
            400,
        ),
        (
            "TE xchunked",
            format!("POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: xchunked\r\n{END}0\r\n\r\n"),
            400,
        ),
        (
            "TE gzip, chunked",
            format!(
                "POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: gzip, chunked\r\n{END}0\r\n\r\n"
            ),
            501,
        ),
        (
            "TE chunked twice",
            format!(
                "POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n{END}0\r\n\r\n"
            ),
            501,
        ),
        (
            "TE in HTTP/1.0",
            format!("POST /x HTTP/1.0\r\nhost: h\r\ntransfer-encoding: chunked\r\n{END}0\r\n\r\n"),
            400,
        ),
        (
            "obs-fold",
            format!("GET /x HTTP/1.1\r\nhost: h\r\nx-a: a\r\n b\r\n{END}"),
            400,
        ),
        (
            "NUL in a field",
            format!("GET /x HTTP/1.1\r\nhost: h\r\nx-a: a\0b\r\n{END}"),
            400,
        ),
        (
            "CR in a field",
            format!("GET /x HTTP/1.1\r\nhost: h\r\nx-a: a\rb\r\n{END}"),
            400,
        ),
        (
            "space before the colon",
            format!("GET /x HTTP/1.1\r\nhost : h\r\n{END}"),
            400,
        ),
        (
            "bad chunk size",
            format!("POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n{END}zz\r\n\r\n"),
            400,
        ),
        (
            "chunk size overflow",
            format!(
                "POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n{END}fffffffffffffffff1\r\nx\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "space in the target",
            format!("GET /a b HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "bad percent-escape",
            format!("GET /user/%zz HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "userinfo in an absolute-form target",
            format!("GET http://evil@h/x HTTP/1.1\r\nhost: h\r\n{END}"),
            400,
        ),
        (
            "CONNECT",
            format!("CONNECT hub:443 HTTP/1.1\r\nhost: hub:443\r\n{END}"),
            405,
        ),
        (
            "TRACE",
            format!("TRACE /user/alice/ HTTP/1.1\r\nhost: h\r\n{END}"),
            405,
        ),
    ];
    let mut failed = Vec::new();
    for (case, bytes, want) in cases {
        let before = site.all_heads().await;
        let got = site.send(bytes).await;
        // A body the proxy had started to forward before the decoder failed
        // may leave a partial request at a backend; none of these may.
        if got.first() != Some(want) || site.all_heads().await != before {
            failed.push(format!("{case}: {got:?}"));
        }
        site.assert_sound(case).await;
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Requests repaired into one unambiguous form, routed as repaired.
#[tokio::test]
async fn repaired_requests_reach_the_backend_they_were_routed_to() {
    let site = Site::start().await;
    // Dot-segments resolved before routing: bob's server gets bob's path.
    for path in [
        "/user/alice/../bob/x",
        "/user/alice/%2e%2E/bob/x",
        "/user/./bob/./x",
    ] {
        let got = site
            .send(&format!("GET {path} HTTP/1.1\r\nhost: h\r\n{END}"))
            .await;
        assert_eq!(got, [200], "{path}");
    }
    let heads = site.bob.heads().await;
    assert_eq!(heads.len(), 3);
    assert!(
        heads
            .iter()
            .all(|h| h.starts_with("get /user/bob/x http/1.1\r\n")),
        "{heads:?}"
    );
    assert!(site.alice.heads().await.is_empty());

    // The absolute form's authority replaces Host.
    let got = site
        .send(&format!(
            "GET http://inner.example/y HTTP/1.1\r\nhost: outer.example\r\n{END}"
        ))
        .await;
    assert_eq!(got, [200]);
    let head = site.hub.heads().await.pop().unwrap();
    assert!(head.starts_with("get /y http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: inner.example\r\n"), "{head}");
    assert!(!head.contains("outer"), "{head}");

    // Bare LF is read as CRLF and forwarded as CRLF.
    let got = site
        .send("GET /lf HTTP/1.1\nhost: h\nconnection: close\n\n")
        .await;
    assert_eq!(got, [200]);
    assert!(
        site.hub
            .heads()
            .await
            .pop()
            .unwrap()
            .starts_with("get /lf http/1.1\r\n")
    );

    // Both framings: `Content-Length` is dropped and the chunked body goes
    // up chunked (RFC 9112 §6.3); equal duplicate lengths become one.
    let both = format!(
        "POST /both HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n{END}0\r\n\r\n"
    );
    assert_eq!(site.send(&both).await, [200]);
    let head = site.hub.heads().await.pop().unwrap();
    assert!(
        head.starts_with("post /both ") && !head.contains("content-length"),
        "{head}"
    );
    let twice = format!(
        "POST /twice HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\ncontent-length: 2\r\n{END}ab"
    );
    assert_eq!(site.send(&twice).await, [200]);
    let head = site.hub.heads().await.pop().unwrap();
    assert_eq!(head.matches("content-length: 2\r\n").count(), 1, "{head}");

    // A chunked body is forwarded with one framing, and what follows it is a
    // request of its own, parsed and proxied.
    let smuggle = format!(
        "POST /c HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /second HTTP/1.1\r\nhost: h\r\n{END}"
    );
    assert_eq!(site.send(&smuggle).await, [200, 200]);
    let lines: Vec<String> = site
        .hub
        .heads()
        .await
        .iter()
        .map(|h| h.lines().next().unwrap().to_owned())
        .collect();
    assert!(
        lines.ends_with(&["post /c http/1.1".into(), "get /second http/1.1".into()]),
        "{lines:?}"
    );
    assert!(
        site.hub
            .bytes()
            .await
            .contains("\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    );
    site.assert_sound("repairs").await;
}

/// An upgrade the backend does not accept never becomes a tunnel, and a
/// 101 nobody asked for is refused.
#[tokio::test]
async fn only_an_accepted_upgrade_becomes_a_tunnel() {
    let site = Site::start().await;
    // The recorder answers 200: the bytes after the request are a request
    // of their own, parsed by the proxy, not raw tunnel bytes.
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /after HTTP/1.1\r\nhost: h\r\n{END}"
    );
    assert_eq!(site.send(&upgrade).await, [200, 200]);
    let heads = site.hub.heads().await;
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[1].starts_with("get /after http/1.1\r\n"));
    site.assert_sound("refused upgrade").await;

    // A backend that switches protocols unasked.
    let rogue = Scripted::reply(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .start()
    .await;
    site.proxy.add_route("/rogue", &rogue.url()).await;
    let got = site
        .send(&format!(
            "GET /rogue HTTP/1.1\r\nhost: h\r\n\r\nGET /user/alice/z HTTP/1.1\r\nhost: h\r\n{END}"
        ))
        .await;
    assert_eq!(got.first(), Some(&502), "{got:?}");
    site.assert_sound("unasked 101").await;
}
