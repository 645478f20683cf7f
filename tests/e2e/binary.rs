//! The `hubgate` binary: flags and exit codes, the `configurable-http-proxy`
//! name, token file, routes file, unix sockets, signals.

use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::net::UnixStream;

use crate::harness::{Backend, Hubgate, TOKEN, api_call, free_port, get, wait_for};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_one_line_errors_with_exit_code_2() {
    for args in [
        &["serve", "--no-such-flag"][..],
        &["serve", "--port", "eighty"],
        &["serve", "--port", "70000"],
        &["serve", "--log-level", "loud"],
        &["serve", "--default-target", "not-a-url"],
        &[
            "serve",
            "--error-target",
            "http://h/e",
            "--error-path",
            "/tmp",
        ],
        &["serve", "--redirect-port", "8080"],
        &["serve", "--custom-header", "no-colon"],
        &["serve", "--max-body-size", "lots"],
        &["serve", "--storage-backend", "redis"],
        &["serve", "--api-ip", "not an ip"],
        &["serve", "--max-connections-per-client", "0"],
        &["serve", "--max-header-size", "1k"],
        &["frobnicate"],
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert_eq!(run(&["--version"]).0, 0);
    assert_eq!(run(&["serve", "--help"]).0, 0);
}

#[test]
fn unreadable_files_fail_the_start_clearly() {
    let (code, stderr) = run(&[
        "serve",
        "--port",
        "0",
        "--ssl-cert",
        "/nonexistent.pem",
        "--ssl-key",
        "/nonexistent.key",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read --ssl-cert /nonexistent.pem"),
        "{stderr}"
    );
}

#[tokio::test]
async fn runs_as_configurable_http_proxy_with_jupyterhubs_flags() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("configurable-http-proxy");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hubgate"), &link).unwrap();
    let hub = Backend::http("hub").start().await;
    let (port, api_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(&link)
        .args([
            "--ip",
            "",
            "--port",
            &port.to_string(),
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            &api_port.to_string(),
        ])
        .args([
            "--error-target",
            &format!("{}/hub/error", hub.url()),
            "--log-level",
            "info",
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], api_port));
    wait_for(Duration::from_secs(10), "the API", || async {
        tokio::net::TcpStream::connect(api).await.is_ok()
    })
    .await;
    let body = format!(r#"{{"target":"{}","jupyterhub":true}}"#, hub.url());
    assert_eq!(
        api_call(api, Method::POST, "/api/routes/", &body, Some(TOKEN))
            .await
            .0,
        StatusCode::CREATED
    );
    let public = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        get(public, "/hub/login").await,
        (StatusCode::OK, "backend hub".into())
    );
    assert_eq!(
        api_call(api, Method::GET, "/api/routes", "", Some("bad"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn token_from_a_docker_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "from-file\n").unwrap();
    let hg = Hubgate::spawn_env(
        &[],
        &[("CONFIGPROXY_AUTH_TOKEN_FILE", secret.to_str().unwrap())],
    )
    .await;
    assert_eq!(
        api_call(
            hg.api_addr(),
            Method::GET,
            "/api/routes",
            "",
            Some("from-file")
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        api_call(hg.api_addr(), Method::GET, "/api/routes", "", Some(TOKEN))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn routes_file_survives_a_crash_and_a_restart() {
    let b = Backend::http("user").start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.json");
    let file_arg = file.to_str().unwrap().to_owned();
    let mut hg = Hubgate::spawn(&["--routes-file", &file_arg]).await;
    let body = format!(
        r#"{{"target":"{}","jupyterhub":true,"user":"alice"}}"#,
        b.url()
    );
    assert_eq!(
        api_call(
            hg.api_addr(),
            Method::POST,
            "/api/routes/user/alice",
            &body,
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let before = api_call(hg.api_addr(), Method::GET, "/api/routes", "", Some(TOKEN))
        .await
        .1;
    wait_for(Duration::from_secs(5), "the routes file", || async {
        std::fs::read_to_string(&file).is_ok_and(|s| s.contains("/user/alice"))
    })
    .await;
    hg.child.kill().unwrap(); // SIGKILL: no chance to flush.
    hg.child.wait().unwrap();

    let hg = Hubgate::spawn(&["--routes-file", &file_arg]).await;
    let after = api_call(hg.api_addr(), Method::GET, "/api/routes", "", Some(TOKEN))
        .await
        .1;
    assert_eq!(
        after, before,
        "routes, data and last_activity come back as they were"
    );
    assert_eq!(
        get(hg.addr(), "/user/alice/lab").await,
        (StatusCode::OK, "backend user".into())
    );

    // A delete is persisted by the final write at SIGTERM too.
    assert_eq!(
        api_call(
            hg.api_addr(),
            Method::DELETE,
            "/api/routes/user/alice",
            "",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let mut hg = hg;
    hg.signal("TERM");
    assert_eq!(hg.wait_exit(Duration::from_secs(15)), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}");
}

#[tokio::test]
async fn corrupt_routes_file_is_kept_aside_and_the_proxy_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.json");
    std::fs::write(&file, "{ not json").unwrap();
    let hg = Hubgate::spawn(&[
        "--routes-file",
        file.to_str().unwrap(),
        "--default-target",
        "http://127.0.0.1:1",
    ])
    .await;
    let (_, routes) = api_call(hg.api_addr(), Method::GET, "/api/routes", "", Some(TOKEN)).await;
    assert!(
        routes.contains(r#""/":{"target":"http://127.0.0.1:1""#),
        "{routes}"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("routes.json.bad-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish() {
    let slow = Backend::http("slow")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let mut hg = Hubgate::spawn(&["--default-target", &slow.url()]).await;
    let addr = hg.addr();
    let request = tokio::spawn(async move { get(addr, "/slow").await });
    wait_for(
        Duration::from_secs(5),
        "the request to reach the backend",
        || async { slow.hits() == 1 },
    )
    .await;
    hg.signal("TERM");
    assert_eq!(
        request.await.unwrap(),
        (StatusCode::OK, "backend slow".into())
    );
    assert_eq!(hg.wait_exit(Duration::from_secs(15)), Some(0));
}

#[tokio::test]
async fn unix_sockets_pid_file_and_metrics() {
    let b = Backend::http("a").start().await;
    let dir = tempfile::tempdir().unwrap();
    let (public, api, pid) = (
        dir.path().join("proxy.sock"),
        dir.path().join("api.sock"),
        dir.path().join("hubgate.pid"),
    );
    let metrics_port = free_port();
    let mut hg = Hubgate::spawn(&[
        "--metrics-ip",
        "127.0.0.1",
        "--metrics-port",
        &metrics_port.to_string(),
        "--pid-file",
        pid.to_str().unwrap(),
        "--default-target",
        &b.url(),
    ])
    .await;
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        hg.child.id().to_string()
    );
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    get(hg.addr(), "/x").await;
    assert!(
        get(metrics, "/metrics")
            .await
            .1
            .contains("hubgate_requests_total{status=\"200\"} 1")
    );
    hg.signal("TERM");
    hg.wait_exit(Duration::from_secs(15));
    assert!(!pid.exists(), "the pid file is removed on exit");

    let sockets = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "serve",
            "--socket",
            public.to_str().unwrap(),
            "--api-socket",
            api.to_str().unwrap(),
            "--default-target",
            &b.url(),
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the unix sockets", || async {
        UnixStream::connect(&public).await.is_ok() && api.exists()
    })
    .await;
    let stream = UnixStream::connect(&public).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/x")
        .header("host", "h")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
    assert!(
        b.last().await.headers.get("x-forwarded-for").is_none(),
        "no peer address on a unix socket"
    );
    drop(sockets);
}

#[tokio::test]
async fn api_over_tls_requires_a_client_certificate_when_asked() {
    use crate::harness::fixture;
    let (cert, key, ca) = (
        fixture("localhost.pem"),
        fixture("localhost.key"),
        fixture("ca.pem"),
    );
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let hg = Hubgate::spawn(&[
        "--api-ssl-cert",
        cert,
        "--api-ssl-key",
        key,
        "--api-ssl-ca",
        ca,
        "--api-ssl-request-cert",
        "--api-ssl-reject-unauthorized",
    ])
    .await;
    let run_curl = |with_cert: bool| {
        let url = format!("https://localhost:{}/api/routes", hg.api_port);
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca,
            "-H",
            &format!("Authorization: token {TOKEN}"),
        ]);
        cmd.args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", hg.api_port),
            &url,
        ]);
        if with_cert {
            cmd.args(["--cert", cert, "--key", key]);
        }
        let out = cmd.output().expect("curl is needed for this test");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run_curl(true), "200");
    assert_ne!(run_curl(false), "200", "no client certificate, no API");
}

#[tokio::test]
async fn json_access_log_one_line_per_request() {
    let b = Backend::http("a").start().await;
    let (port, api_port) = (free_port(), free_port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "serve",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--api-ip",
            "127.0.0.1",
        ])
        .args([
            "--api-port",
            &api_port.to_string(),
            "--default-target",
            &b.url(),
            "--log-format",
            "json",
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let public = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(Duration::from_secs(10), "the proxy", || async {
        tokio::net::TcpStream::connect(public).await.is_ok()
    })
    .await;
    assert_eq!(
        get(public, "/user/x/lab?token=secret").await.0,
        StatusCode::OK
    );
    let _ = Command::new("kill")
        .args(["-s", "TERM", &child.id().unwrap().to_string()])
        .status();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let access: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .filter(|v| v["target"] == "hubgate::access")
        .collect();
    assert_eq!(access.len(), 1, "{stderr}");
    let line = &access[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/user/x/lab");
    assert_eq!(line["status"], 200);
    assert!(line["duration_us"].is_u64());
    assert!(
        !stderr.contains("secret"),
        "query strings (tokens) are not logged"
    );
}

#[tokio::test]
async fn an_open_api_off_loopback_is_refused_and_on_loopback_warned() {
    let run = |ip: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
            .args(["serve", "--port", "0", "--api-port", "0", "--api-ip", ip])
            .env_remove("CONFIGPROXY_AUTH_TOKEN")
            .env_remove("CONFIGPROXY_AUTH_TOKEN_FILE")
            .output()
            .unwrap()
    };
    for ip in ["0.0.0.0", "", "10.1.2.3"] {
        let out = run(ip);
        assert_eq!(out.status.code(), Some(1), "{ip}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("CONFIGPROXY_AUTH_TOKEN"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
    // On loopback it starts (and warns), as configurable-http-proxy does.
    let hg = Hubgate::spawn_env(&[], &[]).await;
    assert_eq!(get(hg.addr(), "/_chp_healthz").await.0, StatusCode::OK);
}

/// `hubgate docker-guard --print-policy FILE`: the guard's configuration
/// `apply` would make for a deployment file, to audit; a file that cannot
/// be read is a clear error.
#[test]
fn the_guards_policies_print_from_a_deployment_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args(["docker-guard", "--print-policy", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (head, json) = text.split_once('\n').unwrap();
    assert!(head.starts_with("# trial-guard-config-"), "{head}");
    let config: serde_json::Value = serde_json::from_str(json).unwrap();
    let kinds: Vec<&str> = config["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["policy"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["discovery", "spawner"]);
    let spawner = &config["sockets"][1]["policy"];
    assert_eq!(spawner["network"], "trial-jupyterhub");
    assert_eq!(spawner["name_prefix"], "jupyter-");

    let (code, err) = run(&["docker-guard", "--print-policy", "/nonexistent/deploy.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the deployment file"), "{err}");
}
