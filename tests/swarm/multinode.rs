//! `hubgate deploy` on a swarm of three managers and two workers, all on
//! this machine (one dockerd per network namespace): the hub on a manager,
//! a hubgate replica on every manager, user servers on the workers; then a
//! manager and the user's worker lose their daemons.

use std::time::{Duration, Instant};

use crate::cluster::free_port;
use crate::deployment::{Deployment, User, deploy_images, local_file, port_gaps};
use crate::nodes::{Cluster, Node};

/// The node a service's running task is on.
fn task_node(manager: &Node, service: &str) -> Option<String> {
    let out = manager.try_docker(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("Running"))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Once the hub says a server stopped, its service is gone from the swarm
/// (else a server the hub forgot would run on, reachable through hubgate).
fn assert_service_gone(manager: &Node, service: &str) {
    let left = manager.docker(&[
        "service",
        "ls",
        "--filter",
        &format!("name={service}"),
        "--format",
        "{{.Name}} {{.Replicas}}",
    ]);
    assert!(
        !left
            .lines()
            .any(|l| l.split_whitespace().next() == Some(service)),
        "the hub stopped the server, but its service is still there: {left}"
    );
}

/// `GET path` of the REST API of each of `service`'s containers on `node`.
fn replica_api(node: &Node, service: &str, path: &str) -> Vec<serde_json::Value> {
    let ids = node.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    ids.lines()
        .map(|id| {
            let json = node.docker(&["exec", id, "hubgate", "api", path]);
            serde_json::from_str(&json).unwrap()
        })
        .collect()
}

/// The endpoints every hubgate replica on `node` has for `path`.
fn discovered(node: &Node, service: &str, path: &str) -> Vec<Vec<String>> {
    replica_api(node, service, "/api/discovery")
        .iter()
        .map(|v| {
            v["routes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["path"] == path)
                .flat_map(|r| r["endpoints"].as_array().unwrap().iter())
                .map(|e| e["url"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The target of API route `path` in each of `service`'s containers on
/// `node` (`None`: that replica has no such route).
fn api_targets(node: &Node, service: &str, path: &str) -> Vec<Option<String>> {
    replica_api(node, service, "/api/routes")
        .iter()
        .map(|v| v[path]["target"].as_str().map(str::to_owned))
        .collect()
}

/// Every replica on the managers `managers` holds the hub's route for
/// `path` (`Some(target)`) or none does (`None`).
fn assert_api_routes(
    cluster: &Cluster,
    managers: &[usize],
    service: &str,
    path: &str,
    want: Option<&str>,
) {
    for &m in managers {
        let targets = api_targets(&cluster.nodes[m], service, path);
        assert!(!targets.is_empty(), "no {service} replica on node{}", m + 1);
        for t in targets {
            assert_eq!(
                t.as_deref(),
                want,
                "the API route {path} on node{}'s replica (the hub's change missed it)",
                m + 1
            );
        }
    }
}

#[test]
fn three_managers_two_workers_survive_a_lost_manager_and_worker() {
    let started = Instant::now();
    let cluster = Cluster::start(5);
    form_with_hubgate(&cluster, 3);
    eprintln!(
        "5 daemons and a 3-manager swarm in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let images = deploy_images();
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let name = "multi";
    let text = local_file(name, port, storage.path(), "")
        .replace(
            &format!("image = \"{}\"\n", images.hub),
            // The hub polls its servers every second (not 30 s), so a poll
            // lands while the swarm moves the server to the other worker.
            &format!(
                "image = \"{}\"\nnode = \"node1\"\nextra_config = \"c.Spawner.poll_interval = 1\"\n",
                images.hub
            ),
        )
        .replace(
            "start_timeout = 90",
            "start_timeout = 90\nconstraints = [\"node.role==worker\"]",
        );
    let mut d = Deployment::new(name, &text);
    d.docker_host = Some(cluster.nodes[0].host.clone());
    let probe = format!("{}:{port}", cluster.nodes[0].ip);

    // A worker cannot deploy.
    let mut on_worker = Deployment::new(name, &text);
    on_worker.docker_host = Some(cluster.nodes[3].host.clone());
    let e = on_worker.fails(&["plan", "FILE"]);
    assert!(e.contains("not a swarm manager (a worker)"), "{e}");
    on_worker.keep(); // nothing was made, and a worker cannot destroy

    // Images onto the nodes that run them: hubgate not yet on node3.
    let loading = Instant::now();
    cluster.load(&images.hub, &[0]);
    cluster.load(&images.hubgate, &[0, 1]);
    cluster.load(&images.singleuser, &[3, 4]);
    // hubgate's image runs the one-off volume jobs on every node.
    cluster.load(&images.hubgate, &[3, 4]);
    eprintln!("images loaded in {:.1} s", loading.elapsed().as_secs_f64());
    let _logs = LogsOnPanic(&cluster);
    let e = d.fails(&["apply", "--probe", &probe, "FILE"]);
    assert!(
        e.contains("node node3 lacks it") && e.contains(&images.hubgate),
        "{e}"
    );
    cluster.load(&images.hubgate, &[2]);
    let applied = Instant::now();
    let out = d.run(&["apply", "--timeout", "120", "--probe", &probe, "FILE"]);
    eprintln!("{}", crate::deployment::output_text(&out));
    assert!(out.status.success(), "apply failed");
    eprintln!(
        "apply across 5 nodes: ready in {:.1} s",
        applied.elapsed().as_secs_f64()
    );
    assert_eq!(
        task_node(&cluster.nodes[0], &format!("{name}-hub")).as_deref(),
        Some("node1")
    );

    // Log in, spawn on a worker, run a kernel; the route answers on every
    // manager's published port.
    let publics: Vec<String> = cluster.nodes[..3]
        .iter()
        .map(|n| format!("http://{}:{port}", n.ip))
        .collect();
    let user = User::new("umulti", publics.clone());
    user.step("login", &[]);
    user.step("spawn", &[]);
    user.step("kernel", &[]);
    user.step("write", &[]);
    user.step("routed", &[]);
    let server = format!("jupyter-{}", user.name);
    // The hub's route reached every replica, not one picked by DNS.
    let hubgate = format!("{name}-hubgate");
    let route = format!("/user/{}", user.name);
    let target = format!("http://{server}:8888");
    assert_api_routes(&cluster, &[0, 1, 2], &hubgate, &route, Some(&target));
    eprintln!("every replica holds the hub's route {route} -> {target}");

    // The hub with no running task (scaled to 0 here; a restart or a
    // failover in life): a manager answers /hub/ with a 503 at once, from
    // hubgate's own page, though the nodes' upstream DNS does not answer
    // (a lookup of a name with no task waits 10 s there).
    let hub_service = format!("{name}-hub");
    let scale = |n: u32| {
        cluster.nodes[0].docker(&[
            "service",
            "scale",
            "--detach",
            &format!("{hub_service}={n}"),
        ]);
    };
    let node1: std::net::SocketAddr = probe.parse().unwrap();
    scale(0);
    crate::cluster::wait_for(
        "hubgate to see the hub with no task",
        Duration::from_secs(30),
        || {
            let a = crate::cluster::http_get(node1, "/hub/login", &[]).ok()?;
            (a.status == 503).then_some(())
        },
    );
    let asked = Instant::now();
    let answer = crate::cluster::http_get(node1, "/hub/login", &[]).unwrap();
    let took = asked.elapsed();
    eprintln!(
        "the hub with no task: {} through node1 in {:.1} ms",
        answer.status,
        took.as_secs_f64() * 1e3
    );
    assert_eq!(answer.status, 503);
    assert!(
        answer.body.contains("not running, or is starting"),
        "{}",
        answer.body
    );
    assert!(took < Duration::from_secs(2), "{took:?}: a DNS lookup");
    scale(1);
    crate::cluster::wait_for("the hub back", Duration::from_secs(90), || {
        let a = crate::cluster::http_get(node1, "/hub/health", &[]).ok()?;
        (a.status == 200).then_some(())
    });

    // The hub's stop no longer waits for the swarm's DNS to forget the
    // name (on these nodes it forwards a name with no task upstream and
    // waits 10 s: stops took 14 s). What is left: the swarm's own 2 s
    // drain before it signals the task (moby's defaultGossipConvergeDelay),
    // the server's shutdown, and the task's end reaching the manager. Then
    // a fresh start.
    let ran_on = task_node(&cluster.nodes[0], &server).unwrap();
    let ran_on = cluster.nodes.iter().find(|n| n.hostname == ran_on).unwrap();
    let stopping = std::time::SystemTime::now();
    let said = user.step("stop", &[]);
    let took: f64 = said
        .split("server stopped in ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap();
    let own = own_shutdown(ran_on, &server, stopping);
    eprintln!("the hub's stop took {took:.1} s; the server's own shutdown {own:.1} s");
    assert!(
        took <= own + 4.0,
        "the stop took {took:.1} s, the server's shutdown {own:.1} s"
    );
    user.step("spawn", &[]);
    user.step("routed", &[]);
    let worker = task_node(&cluster.nodes[0], &server).unwrap();
    assert!(
        worker == "node4" || worker == "node5",
        "the server runs on {worker}"
    );
    eprintln!("the user's server runs on {worker}");

    // An update of hubgate goes one manager at a time: each port has a
    // gap, the three together none.
    d.edit(
        &format!("http_port = {port}"),
        &format!("http_port = {port}\nmax_upload = \"2G\""),
    );
    let addrs: Vec<std::net::SocketAddr> = cluster.nodes[..3]
        .iter()
        .map(|n| format!("{}:{port}", n.ip).parse().unwrap())
        .collect();
    let (gaps, none) = port_gaps(&addrs, || {
        d.ok(&["apply", "--probe", &probe, "FILE"]);
    });
    let shown: Vec<String> = gaps
        .iter()
        .map(|g| format!("{:.2} s", g.as_secs_f64()))
        .collect();
    eprintln!(
        "hubgate update on three managers: each port unserved for {}; no manager serving for {:.2} s",
        shown.join(", "),
        none.as_secs_f64()
    );
    assert!(
        none.is_zero(),
        "a probe round found every manager down (for {none:?}): the update is not one node at a time"
    );

    // Lose node2 (a manager without the hub) and the user's worker.
    let lost_worker = if worker == "node4" { 3 } else { 4 };
    let other_worker = 7 - lost_worker;
    let lost_at = Instant::now();
    cluster.nodes[1].stop();
    cluster.nodes[lost_worker].stop();
    eprintln!("stopped the daemons of node2 and {worker}");
    let survivors = vec![publics[0].clone(), publics[2].clone()];
    // Quorum: 2 of 3 managers still take commands and see the loss.
    let m1 = &cluster.nodes[0];
    let down = crate::cluster::wait_for(
        "node2 and the worker marked down",
        Duration::from_secs(60),
        || {
            let ls = m1.docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            (ls.contains("node2 Down") && ls.contains(&format!("{worker} Down"))).then_some(ls)
        },
    );
    eprintln!(
        "after {:.1} s the swarm (quorum 2/3) reports:\n{down}",
        lost_at.elapsed().as_secs_f64()
    );
    for p in &survivors {
        let status = crate::cluster::http_get(
            p.trim_start_matches("http://").parse().unwrap(),
            "/hub/health",
            &[],
        )
        .map(|a| a.status)
        .unwrap_or(0);
        assert_eq!(status, 200, "{p} no longer serves the hub");
    }
    eprintln!("node1 and node3 keep serving the hub");

    // What the user sees: the server on the lost worker is gone; the swarm
    // starts its task again on the other worker by itself, and the hub,
    // polling every second through the move, still counts it as running.
    let surviving = User::new(&user.name, survivors.clone());
    let back = Instant::now();
    let rescheduled = (0..120).any(|_| {
        if task_node(m1, &server).as_deref() == Some(cluster.nodes[other_worker].hostname.as_str())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    assert!(
        rescheduled,
        "the swarm did not restart the user's server on node{} within 60 s",
        other_worker + 1
    );
    eprintln!(
        "the user's server: swarm restarted its task on node{} after {:.1} s",
        other_worker + 1,
        back.elapsed().as_secs_f64()
    );
    // The restarted server reaches its files and routes through the
    // replicas that are left.
    std::fs::copy(user_state(&user), user_state(&surviving)).unwrap();
    surviving.step("routed", &["--timeout", "90"]);
    surviving.step("read", &[]);
    surviving.step("known", &[]);
    // A fresh start lands on the surviving worker and routes through every
    // remaining replica, with no endpoint of the lost task left anywhere.
    surviving.step("stop", &[]);
    assert_service_gone(m1, &server);
    assert_api_routes(&cluster, &[0, 2], &hubgate, &route, None);
    surviving.step("unrouted", &[]);
    surviving.step("spawn", &[]);
    surviving.step("kernel", &[]);
    surviving.step("read", &[]);
    surviving.step("routed", &[]);
    let now_on = task_node(m1, &server).unwrap();
    assert_eq!(now_on, cluster.nodes[other_worker].hostname);
    let net = m1.docker(&["network", "inspect", "--verbose", &format!("{name}-net")]);
    let net: serde_json::Value = serde_json::from_str(&net).unwrap();
    let task_ip = net[0]["Services"][&server]["Tasks"][0]["EndpointIP"]
        .as_str()
        .unwrap()
        .to_owned();
    for manager in [0, 2] {
        for endpoints in discovered(
            &cluster.nodes[manager],
            &format!("{name}-hubgate"),
            &format!("/user/{}", user.name),
        ) {
            assert_eq!(
                endpoints.len(),
                1,
                "stale endpoints on node{}: {endpoints:?}",
                manager + 1
            );
            assert!(
                endpoints[0].contains(&task_ip),
                "{endpoints:?} is not the new task {task_ip}"
            );
        }
    }
    eprintln!("new server on {now_on}, routed by node1 and node3 to {task_ip} only");
    surviving.step("stop", &[]);
    assert_service_gone(m1, &server);
    surviving.step("unrouted", &[]);

    // The storage moves (the seed's "IP change"): one edit, one apply. The
    // worker that ran the server keeps a volume of the old storage; a
    // server started there afterwards writes into the new storage only.
    let survivor = &cluster.nodes[other_worker];
    let volumes = |node: &Node| {
        node.docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=hubgate.deploy={name}"),
        ])
    };
    let old_volumes = volumes(survivor);
    assert!(old_volumes.contains(&user.name), "{old_volumes}");
    let moved = tempfile::tempdir().unwrap();
    d.edit(
        &format!("local = \"{}\"", storage.path().display()),
        &format!("local = \"{}\"", moved.path().display()),
    );
    let plan = d.plan();
    eprintln!("{plan}");
    assert!(
        plan.contains("volumes on every node")
            && plan.contains(&format!(
                "the storage moved from {}",
                storage.path().display()
            ))
            && plan.contains("on any node"),
        "{plan}"
    );
    d.ok(&["apply", "--probe", &probe, "FILE"]);
    let left = volumes(survivor);
    assert!(
        !left.lines().any(|v| old_volumes.lines().any(|o| o == v)),
        "the old storage's volumes are still on {}: {left}",
        survivor.hostname
    );
    surviving.step("spawn", &[]);
    surviving.step(
        "write",
        &["--name", "moved.txt", "--text", "on the new storage"],
    );
    assert_eq!(task_node(m1, &server).unwrap(), survivor.hostname);
    let written = |root: &std::path::Path| root.join(&user.name).join("moved.txt").exists();
    assert!(written(moved.path()), "not in the new storage");
    assert!(!written(storage.path()), "written into the old storage");
    eprintln!(
        "after the storage moved, the server on {} wrote into the new storage only",
        survivor.hostname
    );
    surviving.step("stop", &[]);

    // destroy --purge: no volume of the deployment left on any live node.
    let out = d.ok(&["destroy", "--yes", "--purge", "FILE"]);
    eprintln!("{out}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i == 1 || i == lost_worker {
            continue; // its daemon is stopped: it holds nothing running
        }
        let left = volumes(node);
        assert!(left.trim().is_empty(), "{} keeps {left}", node.hostname);
    }
    eprintln!("destroy --purge left no deployment volume on the live nodes");
    drop(d);
}

/// Seconds from the kill signal to the exit of `service`'s container on
/// `node`, from the node's events since `since`.
fn own_shutdown(node: &Node, service: &str, since: std::time::SystemTime) -> f64 {
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let since = secs(since).saturating_sub(1);
    // A time to end the stream at (docker events waits until then).
    let until = secs(std::time::SystemTime::now()) + 1;
    let events = node.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--format",
        "{{.Action}} {{.TimeNano}}",
    ]);
    let at = |action: &str| -> Option<u128> {
        events
            .lines()
            .find(|l| l.starts_with(action))
            .and_then(|l| l.split(' ').nth(1)?.parse().ok())
    };
    match (at("kill"), at("die")) {
        (Some(kill), Some(die)) => (die.saturating_sub(kill)) as f64 / 1e9,
        _ => panic!(
            "no kill and die events of {service} on {}: {events}",
            node.hostname
        ),
    }
}

fn user_state(u: &User) -> &std::path::Path {
    u.state_path()
}

/// Prints the last lines of every container's log on the managers when the
/// test fails.
struct LogsOnPanic<'a>(&'a Cluster);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let text = |o: std::process::Output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        for node in self.0.nodes.iter().filter(|n| n.is_up()) {
            let listing =
                node.try_docker(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
            let listing = text(listing);
            eprintln!("=== {} containers:\n{listing}", node.hostname);
            for line in listing.lines() {
                let Some((id, rest)) = line.split_once(' ') else {
                    continue;
                };
                eprintln!(
                    "--- {} {rest}:\n{}",
                    node.hostname,
                    text(node.try_docker(&["logs", "--tail", "40", id]))
                );
                if rest.contains("-hub.") {
                    // The hub's whole story of spawns, stops and routes,
                    // without its access log.
                    let all = text(node.try_docker(&["logs", "-t", id]));
                    let story: Vec<&str> = all
                        .lines()
                        .filter(|l| {
                            ["spawner", "base:", "user:", "proxy:", "[W ", "[E ", "Error"]
                                .iter()
                                .any(|k| l.contains(k))
                                && !l.contains("_xsrf_utils")
                        })
                        .collect();
                    eprintln!(
                        "--- {} {rest}: spawner and proxy lines\n{}",
                        node.hostname,
                        story.join("\n")
                    );
                }
                if rest.contains("-hubgate.") && rest.contains(" Up ") {
                    for api in ["/api/routes", "/api/discovery"] {
                        eprintln!(
                            "--- {} {rest} {api}:\n{}",
                            node.hostname,
                            text(node.try_docker(&["exec", id, "hubgate", "api", api]))
                        );
                    }
                }
            }
        }
    }
}

/// Makes the swarm with `hubgate deploy init` on node1 and the join commands
/// `hubgate deploy join-token` prints, run on the others.
fn form_with_hubgate(cluster: &Cluster, managers: usize) {
    let deploy = |node: &Node, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"))
            .arg("deploy")
            .args(args)
            .env("DOCKER_HOST", &node.host)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = &cluster.nodes[0];
    let init = deploy(first, &["init", "--advertise-addr", &first.ip]);
    assert!(
        init.contains(&format!("Initialised a swarm advertising {}", first.ip)),
        "{init}"
    );
    let again = deploy(first, &["init", "--advertise-addr", &first.ip]);
    assert!(again.contains("a swarm manager already"), "{again}");
    let tokens = deploy(first, &["join-token"]);
    let command = |role: &str| -> Vec<String> {
        let line = tokens
            .lines()
            .find(|l| l.starts_with(&format!("To add a {role}")))
            .unwrap();
        let cmd = line.split_once(':').unwrap().1.trim();
        assert!(cmd.starts_with("docker swarm join --token "), "{line}");
        cmd.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    for (i, node) in cluster.nodes.iter().enumerate().skip(1) {
        let mut args = command(if i < managers { "manager" } else { "worker" });
        args.insert(2, "--advertise-addr".into());
        args.insert(3, node.ip.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        node.docker(&args);
    }
    eprintln!("swarm made by hubgate deploy init and join-token:\n{init}");
}
