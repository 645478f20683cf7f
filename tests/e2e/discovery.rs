//! Discovery through the `hubgate` binary: a discovery file, `GET
//! /api/discovery` behind the token, and an unreachable Docker engine that
//! leaves everything else serving.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::harness::{Backend, Hubgate, TOKEN, api_call, free_port, get, send, wait_for};

async fn discovery(hg: &Hubgate) -> serde_json::Value {
    let (status, body) = api_call(
        hg.api_addr(),
        Method::GET,
        "/api/discovery",
        "",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_discovery_file_routes_over_its_endpoints_and_shows_in_the_status() {
    let (a, b) = (
        Backend::http("a").start().await,
        Backend::http("b").start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.json");
    let layer = serde_json::json!({
        "routes": [{
            "service": "grafana",
            "path": "/grafana",
            "port": 3000,
            "endpoints": [a.addr.to_string(), b.addr.to_string()],
            "sticky_cookie": null
        }]
    });
    std::fs::write(&file, layer.to_string()).unwrap();
    let metrics_port = free_port().to_string();
    let hg = Hubgate::spawn(&[
        "--discovery-file",
        file.to_str().unwrap(),
        "--metrics-ip",
        "127.0.0.1",
        "--metrics-port",
        &metrics_port,
    ])
    .await;
    wait_for(Duration::from_secs(5), "the file's route", || async {
        get(hg.addr(), "/grafana/").await.0 == StatusCode::OK
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(get(hg.addr(), "/grafana/x").await.1);
    }
    assert_eq!(seen.len(), 2, "both endpoints: {seen:?}");

    let d = discovery(&hg).await;
    assert_eq!(d["sources"][0]["source"], "static");
    assert_eq!(d["sources"][0]["state"], "watching");
    let route = &d["routes"][0];
    assert_eq!(route["path"], "/grafana");
    assert_eq!(route["target"], "http://grafana:3000");
    assert_eq!(route["endpoints"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(route["endpoints"][0]["healthy"], true);
    let (status, _) = api_call(
        hg.api_addr(),
        Method::GET,
        "/api/discovery",
        "",
        Some("wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api_call(hg.api_addr(), Method::GET, "/api/routes", "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);

    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (_, metrics) = get(metrics_addr, "/metrics").await;
    assert!(metrics.contains("hubgate_discovered_routes 1"), "{metrics}");
    assert!(metrics.contains("hubgate_endpoints_up 2"), "{metrics}");
}

#[tokio::test]
async fn a_bad_discovery_file_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.json");
    std::fs::write(
        &file,
        r#"{"routes": [{"service": "x", "colour": "red", "endpoints": []}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "serve",
            "--port",
            "0",
            "--api-port",
            "0",
            "--discovery-file",
        ])
        .arg(&file)
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--discovery-file") && err.contains("colour"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_docker_engine_is_reported_and_nothing_else_stops() {
    let user = Backend::http("user").start().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", dir.path().join("no-docker.sock").display());
    let hg = Hubgate::spawn_env(
        &["--swarm", "--swarm-network", "jhub"],
        &[("CONFIGPROXY_AUTH_TOKEN", TOKEN), ("DOCKER_HOST", &missing)],
    )
    .await;
    let body = serde_json::json!({ "target": user.url() }).to_string();
    let (status, _) = api_call(
        hg.api_addr(),
        Method::POST,
        "/api/routes/user/a",
        &body,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        get(hg.addr(), "/user/a/").await,
        (StatusCode::OK, "backend user".into())
    );
    // Until discovery answers once, a path no route matches may be one a
    // discovered route will serve (the hub's, on a replica that just
    // restarted): a 503 to retry, not a 404.
    let req = http::Request::get("/hub/api/users/a/server")
        .header("host", "localhost")
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = send(hg.addr(), req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    let page = String::from_utf8_lossy(resp.body());
    assert!(page.contains("still learning its routes"), "{page}");
    let d = discovery(&hg).await;
    let source = &d["sources"][0];
    assert_eq!(source["source"], "swarm");
    assert_eq!(source["state"], "retrying", "{d}");
    assert!(
        source["last_error"]
            .as_str()
            .unwrap()
            .contains("no-docker.sock"),
        "{d}"
    );
    assert!(source["next_retry_ms"].as_u64().is_some());
}

/// The day-two defect: a server starting or gone, or the hub restarting,
/// is a swarm service with no running task. hubgate knows it, so the 503
/// comes at once, says so, and carries `Retry-After`; the error page comes
/// from the hub's task address (not its name), or from hubgate itself when
/// the hub has no task either. No DNS lookup of a name with no address
/// (10 s per request on a node whose upstream DNS does not answer).
#[tokio::test]
async fn a_known_service_with_no_task_answers_503_at_once() {
    let hub = Backend::http("hub-error-page").status(503).start().await;
    let dir = tempfile::tempdir().unwrap();
    let error_target = format!("http://jhub-hub:{}/hub/error", hub.addr.port());
    // A hubgate whose discovery knows the hub (tasks `hub_tasks`) and
    // carol's server (no task), with JupyterHub's route to carol's server.
    let start = |hub_tasks: &'static [&'static str]| {
        let file = dir.path().join(format!("layer-{}.json", hub_tasks.len()));
        let layer = serde_json::json!({"services": {"jhub-hub": hub_tasks, "jupyter-carol": []}});
        std::fs::write(&file, layer.to_string()).unwrap();
        let error_target = error_target.clone();
        async move {
            let hg = Hubgate::spawn(&[
                "--discovery-file",
                file.to_str().unwrap(),
                "--error-target",
                &error_target,
            ])
            .await;
            let (status, body) = api_call(
                hg.api_addr(),
                Method::POST,
                "/api/routes/user/carol",
                r#"{"target": "http://jupyter-carol:8888"}"#,
                Some(TOKEN),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            hg
        }
    };
    let ask = |hg: &Hubgate| {
        let addr = hg.addr();
        async move {
            let started = std::time::Instant::now();
            let req = http::Request::get("/user/carol/lab")
                .header("host", "localhost")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = send(addr, req).await;
            (resp, started.elapsed())
        }
    };

    let hg = start(&["127.0.0.1"]).await;
    let (resp, took) = ask(&hg).await;
    eprintln!("503 for a service with no task, the hub's page: {took:?}");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(
        resp.body().as_ref(),
        b"backend hub-error-page",
        "the hub's page, fetched at its task's address"
    );
    let asked = hub.last().await.uri;
    assert!(asked.starts_with("/hub/error/503?url="), "{asked}");
    drop(hg);

    // The hub restarting: no task of its own either.
    let hg = start(&[]).await;
    let hits = hub.hits();
    let (resp, took) = ask(&hg).await;
    eprintln!("503 for a service with no task, the built-in page: {took:?}");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    let text = String::from_utf8_lossy(resp.body());
    assert!(text.contains("not running, or is starting"), "{text}");
    assert_eq!(
        hub.hits(),
        hits,
        "no error page asked of a hub with no task"
    );
    // Far below the 10 s a lookup of a name with no task takes where the
    // upstream DNS does not answer (the bound catches a lookup, not speed).
    assert!(took < Duration::from_secs(2), "{took:?}");
}
