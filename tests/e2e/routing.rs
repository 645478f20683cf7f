//! The routing matrix: segment-wise longest prefix, trailing slashes,
//! escapes, include-prefix / prepend-path, host routing, scale.

use http::StatusCode;
use hubgate_proxy::ProxyConfig;

use crate::harness::{Backend, TestProxy, get, get_host};

#[tokio::test]
async fn longest_whole_segment_prefix() {
    let (root, bc, bcd) = (
        Backend::http("root").start().await,
        Backend::http("bc").start().await,
        Backend::http("bcd").start().await,
    );
    let p = TestProxy::start().await;
    p.add_route("/", &root.url()).await;
    p.add_route("/b/c", &bc.url()).await;
    p.add_route("/b/c/d", &bcd.url()).await;
    for (path, who) in [
        ("/b/c/dword", "bc"),
        ("/b/c/d", "bcd"),
        ("/b/c/d/", "bcd"),
        ("/b/c/d/e?x=1", "bcd"),
        ("/b/c", "bc"),
        ("/b/c/", "bc"),
        ("/b", "root"),
        ("/B/c", "root"),
        ("/", "root"),
    ] {
        assert_eq!(
            get(p.addr, path).await,
            (StatusCode::OK, format!("backend {who}")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn no_route_is_404() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/user/alice", &b.url()).await;
    assert_eq!(get(p.addr, "/user/alicex").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(p.addr, "/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn upstream_path_follows_include_prefix_and_prepend_path() {
    let b = Backend::http("a").start().await;
    let cases = [
        (true, true, "/foo/bar/rest?x=1"),
        (false, true, "/foo/rest?x=1"),
        (true, false, "/bar/rest?x=1"),
        (false, false, "/rest?x=1"),
    ];
    for (include_prefix, prepend_path, expected) in cases {
        let config = ProxyConfig {
            include_prefix,
            prepend_path,
            ..ProxyConfig::default()
        };
        let p = TestProxy::with(config, false).await;
        p.add_route("/bar", &format!("{}/foo/", b.url())).await;
        assert_eq!(get(p.addr, "/bar/rest?x=1").await.0, StatusCode::OK);
        assert_eq!(
            b.last().await.uri,
            expected,
            "include_prefix={include_prefix} prepend_path={prepend_path}"
        );
    }
    // The bare prefix, without a prefix to keep, goes to the target's path.
    let p = TestProxy::with(
        ProxyConfig {
            include_prefix: false,
            ..ProxyConfig::default()
        },
        false,
    )
    .await;
    p.add_route("/bar", &format!("{}/foo", b.url())).await;
    get(p.addr, "/bar").await;
    assert_eq!(b.last().await.uri, "/foo");
    p.add_route("/baz", &b.url()).await;
    get(p.addr, "/baz").await;
    assert_eq!(b.last().await.uri, "/");
}

#[tokio::test]
async fn escapes_match_decoded_and_pass_through_as_sent() {
    let b = Backend::http("a").start().await;
    let p = TestProxy::start().await;
    p.add_route("/b%40r/b%20r", &b.url()).await;
    p.add_route("/user/%E7%A7%80", &b.url()).await;
    assert_eq!(get(p.addr, "/b%40r/b%20r/x%2Fy").await.0, StatusCode::OK);
    assert_eq!(b.last().await.uri, "/b%40r/b%20r/x%2Fy");
    assert_eq!(get(p.addr, "/b@r/b%20r").await.0, StatusCode::OK);
    assert_eq!(b.last().await.uri, "/b@r/b%20r");
    assert_eq!(get(p.addr, "/user/%E7%A7%80/lab").await.0, StatusCode::OK);
    assert_eq!(b.last().await.uri, "/user/%E7%A7%80/lab");
    // A malformed escape is the client's error: 400, nothing forwarded.
    let hits = b.hits();
    assert_eq!(get(p.addr, "/b%40r/%zz").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(p.addr, "/user/%E7").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(b.hits(), hits);
}

#[tokio::test]
async fn host_routing_uses_the_host_without_port() {
    let (hub, alice) = (
        Backend::http("hub").start().await,
        Backend::http("alice").start().await,
    );
    let p = TestProxy::with(ProxyConfig::default(), true).await;
    p.add_route("/", &hub.url()).await;
    p.add_route("/alice.hub.test/user/alice", &alice.url())
        .await;
    assert_eq!(
        get_host(p.addr, "/user/alice/lab", "alice.hub.test:8000")
            .await
            .1,
        "backend alice"
    );
    assert_eq!(
        alice.last().await.uri,
        "/user/alice/lab",
        "the host is not part of the upstream path"
    );
    assert_eq!(
        get_host(p.addr, "/user/alice/lab", "bob.hub.test").await.1,
        "backend hub"
    );
    assert_eq!(
        get_host(p.addr, "/hub/login", "alice.hub.test").await.1,
        "backend hub"
    );

    let p = TestProxy::with(
        ProxyConfig {
            include_prefix: false,
            ..ProxyConfig::default()
        },
        true,
    )
    .await;
    p.add_route("/alice.hub.test/user/alice", &alice.url())
        .await;
    get_host(p.addr, "/user/alice/lab", "alice.hub.test").await;
    assert_eq!(alice.last().await.uri, "/lab");
}

#[tokio::test]
async fn a_route_change_is_seen_by_the_next_request() {
    let (a, b) = (
        Backend::http("a").start().await,
        Backend::http("b").start().await,
    );
    let p = TestProxy::start().await;
    p.add_route("/user/x", &a.url()).await;
    assert_eq!(get(p.addr, "/user/x").await.1, "backend a");
    p.add_route("/user/x", &b.url()).await;
    assert_eq!(get(p.addr, "/user/x").await.1, "backend b");
    p.api(http::Method::DELETE, "/api/routes/user/x", "").await;
    assert_eq!(get(p.addr, "/user/x").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hundred_thousand_routes() {
    let (hit, other) = (
        Backend::http("hit").start().await,
        Backend::http("other").start().await,
    );
    let p = TestProxy::start().await;
    let mut json = String::from("{");
    for i in 0..100_000 {
        let target = if i % 997 == 0 { hit.url() } else { other.url() };
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(r#""/user/u{i}":{{"target":"{target}"}}"#));
    }
    json.push('}');
    assert_eq!(
        p.routes.restore_api_routes(json.as_bytes()).await.unwrap(),
        100_000
    );
    assert_eq!(p.routes.load().len(), 100_000);
    for i in [0, 997, 99_700] {
        assert_eq!(
            get(p.addr, &format!("/user/u{i}/api/kernels")).await.1,
            "backend hit",
            "u{i}"
        );
    }
    assert_eq!(get(p.addr, "/user/u1/lab").await.1, "backend other");
    assert_eq!(get(p.addr, "/user/u100000").await.0, StatusCode::NOT_FOUND);
    // API writes stay cheap with the big table in place.
    p.add_route("/user/new", &hit.url()).await;
    assert_eq!(get(p.addr, "/user/new").await.1, "backend hit");
}
