//! Discovered routes with several endpoints, in process: round robin, least
//! connections, sticky cookies, passive and active health, strip-prefix,
//! host rules, and API targets naming a known service.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hubgate_proxy::{DiscoveredLayer, DiscoveredRoute, HealthCheck, Policy};

use crate::harness::{Backend, TestProxy, echo, get, get_host, send, wait_for, websocket};

fn route(path: &str, endpoints: &[String]) -> DiscoveredRoute {
    DiscoveredRoute::new(
        &format!("svc{path}"),
        path,
        "http://svc:80",
        endpoints.to_vec(),
    )
}

fn layer(routes: Vec<DiscoveredRoute>) -> DiscoveredLayer {
    DiscoveredLayer {
        routes,
        services: HashMap::new(),
    }
}

async fn counts(p: &TestProxy, path: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (status, body) = get(p.addr, path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        *seen.entry(body).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn round_robin_spreads_requests_over_every_endpoint() {
    let backends = [
        Backend::http("a").start().await,
        Backend::http("b").start().await,
        Backend::http("c").start().await,
    ];
    let p = TestProxy::start().await;
    let urls: Vec<String> = backends.iter().map(|b| b.url()).collect();
    assert!(
        p.routes
            .replace_discovered(layer(vec![route("/svc", &urls)]))
            .await
            .is_empty()
    );
    let seen = counts(&p, "/svc/x", 30).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");
    assert!(
        p.api(Method::GET, "/api/routes", "").await.1 == "{}",
        "discovered routes stay hidden"
    );
}

#[tokio::test]
async fn least_connections_avoids_the_busy_endpoint() {
    let slow = Backend::http("slow")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let fast = Backend::http("fast").start().await;
    let p = TestProxy::start().await;
    let mut r = route("/lc", &[slow.url(), fast.url()]);
    r.policy = Policy::LeastConnections;
    p.routes.replace_discovered(layer(vec![r])).await;
    // Keep the slow endpoint busy, then everything else goes to the fast one.
    let addr = p.addr;
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/lc").await }))
        .collect();
    wait_for(
        Duration::from_secs(2),
        "the slow endpoint to be busy",
        || async { slow.hits() >= 1 },
    )
    .await;
    let seen = counts(&p, "/lc", 10).await;
    assert_eq!(seen.get("backend fast"), Some(&10), "{seen:?}");
    for b in busy {
        b.await.unwrap();
    }
}

#[tokio::test]
async fn a_sticky_cookie_keeps_a_client_on_one_endpoint() {
    let (a, b) = (
        Backend::http("a").start().await,
        Backend::http("b").start().await,
    );
    let p = TestProxy::start().await;
    let mut r = route("/app", &[a.url(), b.url()]);
    r.sticky_cookie = Some("hg".into());
    p.routes.replace_discovered(layer(vec![r])).await;
    let first = send(
        p.addr,
        Request::get("/app/")
            .header("host", "x")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("hg=") && cookie.contains("Path=/app") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..6 {
        let req = Request::get("/app/")
            .header("host", "x")
            .header("cookie", &pair);
        let resp = send(p.addr, req.body(Full::default()).unwrap()).await;
        assert_eq!(resp.body(), first.body());
        assert!(!resp.headers().contains_key("set-cookie"), "already pinned");
    }
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_without_failing_requests() {
    let live = Backend::http("live").start().await;
    let dead = Backend::http("dead").start().await;
    let dead_url = dead.url();
    dead.stop();
    let p = TestProxy::start().await;
    p.routes
        .replace_discovered(layer(vec![route("/p", &[dead_url, live.url()])]))
        .await;
    let seen = counts(&p, "/p", 10).await;
    assert_eq!(
        seen.get("backend live"),
        Some(&10),
        "every request served: {seen:?}"
    );
    // Websocket upgrades fail over as well.
    let echo_backend = Backend::websocket_echo("ws").start().await;
    let gone = Backend::websocket_echo("gone").start().await;
    let gone_url = gone.url();
    gone.stop();
    p.routes
        .replace_discovered(layer(vec![route("/ws", &[gone_url, echo_backend.url()])]))
        .await;
    for _ in 0..3 {
        let mut ws = websocket(p.addr, "/ws").await;
        echo(&mut ws, "hi").await;
    }
}

#[tokio::test]
async fn no_endpoint_left_is_503() {
    let p = TestProxy::start().await;
    p.routes
        .replace_discovered(layer(vec![route("/none", &[])]))
        .await;
    assert_eq!(
        get(p.addr, "/none").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn an_endpoint_failing_its_health_check_leaves_the_rotation() {
    let healthy = Backend::http("ok").start().await;
    let sick = Backend::http("sick").status(503).start().await;
    let p = TestProxy::start().await;
    let mut r = route("/h", &[healthy.url(), sick.url()]);
    r.health = Some(HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
    });
    p.routes.replace_discovered(layer(vec![r])).await;
    let checker = p.proxy.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { checker.run_health_checks(token).await });
    wait_for(
        Duration::from_secs(3),
        "the sick endpoint to be checked",
        || async { sick.seen().await.iter().any(|s| s.uri == "/healthz") },
    )
    .await;
    // Out of the rotation once its 503 is counted: 8 requests in a row
    // (round robin over two) all reach the healthy one.
    wait_for(
        Duration::from_secs(3),
        "the sick endpoint to leave",
        || async { counts(&p, "/h", 8).await.get("backend ok") == Some(&8) },
    )
    .await;
    stop.cancel();
}

#[tokio::test]
async fn strip_prefix_and_host_rules() {
    let grafana = Backend::http("grafana").start().await;
    let hub = Backend::http("hub").start().await;
    let p = TestProxy::start().await;
    p.add_route("/", &hub.url()).await;
    let mut by_host = route("/", &[grafana.url()]);
    by_host.host = Some("grafana.example.org".into());
    let mut stripped = route("/tools/grafana", &[grafana.url()]);
    stripped.strip_prefix = true;
    p.routes
        .replace_discovered(layer(vec![by_host, stripped]))
        .await;
    // A host rule wins over JupyterHub's catch-all `/`; other hosts do not match it.
    assert_eq!(
        get_host(p.addr, "/d/x", "Grafana.example.org:443").await.1,
        "backend grafana"
    );
    assert_eq!(
        get_host(p.addr, "/d/x", "hub.example.org").await.1,
        "backend hub"
    );
    assert_eq!(
        get(p.addr, "/tools/grafana/api/health?x=1").await.1,
        "backend grafana"
    );
    assert_eq!(
        grafana.last().await.uri,
        "/api/health?x=1",
        "prefix stripped"
    );
}

#[tokio::test]
async fn an_api_target_naming_a_known_service_goes_to_its_tasks() {
    let task = Backend::http("task").start().await;
    let p = TestProxy::start().await;
    // `jupyter-alice` does not resolve: only the service map can reach it.
    let target = format!("http://jupyter-alice:{}", task.addr.port());
    p.add_route("/user/alice", &target).await;
    assert_eq!(
        get(p.addr, "/user/alice/api").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let services = HashMap::from([("jupyter-alice".to_owned(), vec![task.addr.ip()])]);
    p.routes
        .replace_discovered(DiscoveredLayer {
            routes: vec![],
            services,
        })
        .await;
    assert_eq!(
        get(p.addr, "/user/alice/api").await,
        (StatusCode::OK, "backend task".into())
    );
    let (_, routes) = p.api(Method::GET, "/api/routes", "").await;
    assert!(
        routes.contains(&format!(r#""target":"{target}""#)),
        "echoed as sent: {routes}"
    );
}
