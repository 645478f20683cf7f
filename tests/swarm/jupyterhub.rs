//! A JupyterHub-shaped check: a service named and shaped like a
//! SwarmSpawner user server, reached through hubgate at its task address
//! (never the VIP, which does not route here), with TCP keepalive on both
//! sides of its websocket, and served by a second replica that never got
//! the API call.

use std::time::Duration;

use crate::cluster::*;

const ALICE: &str = "jupyter-alice";

fn alice_env() -> Vec<&'static str> {
    vec![
        "PORT=8888",
        "JUPYTERHUB_USER=alice",
        "JUPYTERHUB_SERVER_NAME=",
        "JUPYTERHUB_SERVICE_PREFIX=/user/alice/",
        "JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8888/user/alice/",
        "JUPYTERHUB_BASE_URL=/",
        "JUPYTERHUB_API_URL=http://hub:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL=http://hub:8081/hub/api/users/alice/activity",
        "JUPYTERHUB_API_TOKEN=not-to-be-seen",
    ]
}

fn api(hubgate: &Hubgate, method: &str, path: &str, body: &str) -> Answer {
    let auth = format!("token {TOKEN}");
    http(
        hubgate.api(),
        method,
        path,
        &[("Authorization", &auth)],
        body,
    )
    .unwrap()
}

/// `ss` lines of established TCP sockets in the container's network
/// namespace, with their timers.
fn sockets(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ss",
            "-tnoH",
            "state",
            "established",
        ])
        .output()
        .expect("nsenter");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_swarmspawner_server_is_reached_at_its_task_address_by_every_replica() {
    let _ = docker_ok(&["service", "rm", ALICE]);
    let net = Network::create("jhub");
    let a = Hubgate::start(&net, &[]);
    let b = Hubgate::start(&net, &[]);
    let alice = Service::backend(ALICE, &net, 1, &[], &alice_env());
    wait_for("alice's task to run", Duration::from_secs(60), || {
        (!alice.containers().is_empty()).then_some(())
    });
    let task = docker(&[
        "inspect",
        "--format",
        "{{.Config.Hostname}}",
        &alice.containers()[0],
    ]);

    // JupyterHub's call, to replica A only: SwarmSpawner's target names the service.
    let body = r#"{"target":"http://jupyter-alice:8888","user":"alice","server_name":"","jupyterhub":true}"#;
    assert_eq!(api(&a, "POST", "/api/routes/user/alice", body).status, 201);
    let served = wait_for("A to serve alice", Duration::from_secs(30), || {
        task_at(a.addr(), "/user/alice/api/status")
    });
    assert_eq!(served, task, "A reaches alice's task");
    let routes = api(&a, "GET", "/api/routes", "");
    let routes: serde_json::Value = serde_json::from_str(&routes.body).unwrap();
    assert_eq!(
        routes["/user/alice"]["target"], "http://jupyter-alice:8888",
        "echoed as sent"
    );
    assert_eq!(
        routes.as_object().unwrap().len(),
        1,
        "discovered routes are not reported: {routes}"
    );
    assert!(
        !a.discovery().to_string().contains("not-to-be-seen"),
        "the API token never shows"
    );

    // The VIP does not route on this machine: hubgate did not go through it.
    let vip = docker(&[
        "service",
        "inspect",
        "--format",
        "{{range .Endpoint.VirtualIPs}}{{.Addr}} {{end}}",
        ALICE,
    ]);
    let vip = vip
        .split_whitespace()
        .next()
        .expect("alice has a VIP")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let vip_route = format!(r#"{{"target":"http://{vip}:8888"}}"#);
    assert_eq!(
        api(&a, "POST", "/api/routes/vipcheck", &vip_route).status,
        201
    );
    let through_vip = http_get(a.addr(), "/vipcheck/api/status", &[]).unwrap();
    assert_eq!(
        through_vip.status, 503,
        "the VIP {vip} answers nothing here: {}",
        through_vip.body
    );

    // Its websocket: TCP keepalive on both sides, read back from the sockets.
    let mut ws = websocket(a.addr(), "/user/alice/api/kernels/k1/channels");
    echo(&mut ws, "execute_request");
    // `ss` shows one timer per socket: while a segment waits for its ACK it
    // shows the retransmit timer instead, so look again until both settle.
    let pid = a.pid();
    let mut last = Vec::new();
    let both = (0..50).any(|_| {
        last = sockets(pid);
        let client_side = last
            .iter()
            .any(|l| l.contains(":80 ") && l.contains("keepalive"));
        let upstream_side = last
            .iter()
            .any(|l| l.contains(":8888 ") && l.contains("keepalive"));
        std::thread::sleep(Duration::from_millis(100));
        client_side && upstream_side
    });
    assert!(both, "keepalive on both sides: {last:#?}");
    echo(&mut ws, "still open");

    // Replica B never got the API call and serves alice from the spec alone.
    assert_eq!(api(&b, "GET", "/api/routes", "").body, "{}");
    assert_eq!(
        task_at(b.addr(), "/user/alice/api/status").as_deref(),
        Some(task.as_str())
    );
    // A restarted replica serves her at once.
    let before = b.service.containers();
    b.service.update(&["--force"]);
    wait_for("B to restart", Duration::from_secs(60), || {
        let now = b.service.containers();
        let restarted = now.len() == 1 && now != before;
        let up = http_get(b.addr(), "/_chp_healthz", &[]).ok()?.status == 200;
        (up && restarted).then_some(())
    });
    // Served from the swarm's state, with no call from JupyterHub; the time
    // is printed, not asserted (bench/ measures propagation).
    let restarted = std::time::Instant::now();
    wait_for(
        "restarted B to serve alice",
        Duration::from_secs(30),
        || task_at(b.addr(), "/user/alice/"),
    );
    println!(
        "restarted replica healthy -> serving alice: {:?}",
        restarted.elapsed()
    );

    // The server stops: the service goes, and with it the route everywhere.
    drop(ws);
    drop(alice);
    wait_for("B to drop alice", Duration::from_secs(30), || {
        (http_get(b.addr(), "/user/alice/", &[]).ok()?.status == 404).then_some(())
    });
    wait_for(
        "A's discovered route to go",
        Duration::from_secs(30),
        || {
            let d = a.discovery();
            let gone = !d["routes"]
                .as_array()?
                .iter()
                .any(|r| r["path"] == "/user/alice");
            gone.then_some(())
        },
    );
    assert_eq!(api(&a, "DELETE", "/api/routes/user/alice", "").status, 204);
    assert_eq!(http_get(a.addr(), "/user/alice/", &[]).unwrap().status, 404);
}
