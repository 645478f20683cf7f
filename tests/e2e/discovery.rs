//! Discovery through the `hubgate` binary: a discovery file, `GET
//! /api/discovery` behind the token, and an unreachable Docker engine that
//! leaves everything else serving.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::harness::{Backend, Hubgate, TOKEN, api_call, free_port, get, wait_for};

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
