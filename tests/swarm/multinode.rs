//! `hubgate deploy` on a swarm of three managers and two workers, all on
//! this machine (one dockerd per network namespace): a hub task and a
//! hubgate replica on every manager, user servers on the workers; the hub
//! fails over twice (`hub_failover`); then a manager and the user's worker
//! lose their daemons; the storage moves; last, a deployment with its
//! database on PostgreSQL fails over twice (`hub_postgres`).

use std::time::{Duration, Instant};

use crate::cluster::free_port;
use crate::deployment::{Deployment, User, deploy_images, port_gaps};
use crate::failover::{running_task_ip, wait_managers, wait_serving};
use crate::hub_failover::{Raft, Scene, follower_frozen, manager_stopped, move_hub_off};
use crate::hub_postgres::failovers_on_postgresql;
use crate::multinode_checks::{
    LogsOnPanic, assert_api_routes, assert_service_gone, discovered, form_with_hubgate,
    gpu_servers, metadata_blocked, multinode_file, own_shutdown, task_node, user_state,
};
use crate::nodes::{Cluster, Node};

#[test]
fn three_managers_two_workers_survive_a_lost_manager_and_worker() {
    let started = Instant::now();
    // node5, a worker, advertises a (fake) GPU.
    let cluster = Cluster::start(5, &[4]);
    form_with_hubgate(&cluster, 3);
    eprintln!(
        "5 daemons and a 3-manager swarm in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let images = deploy_images();
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let name = "multi";
    let text = multinode_file(&cluster, name, port, storage.path());
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
    cluster.load(&images.hub, &[0, 1, 2]);
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
    // The servers' image is on both workers, where they may run.
    assert!(
        crate::deployment::output_text(&out)
            .contains(&format!("{} is on the 2 node(s)", images.singleuser)),
        "the image check"
    );
    eprintln!(
        "apply across 5 nodes: ready in {:.1} s",
        applied.elapsed().as_secs_f64()
    );

    // Log in, spawn on a worker, run a kernel; the route answers on every
    // manager's published port.
    let publics = cluster.publics(3, port);
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

    // The cloud's metadata service (a stand-in the test serves) is out of
    // the server's reach; a GPU server lands on the GPU node, and a second
    // one is refused while the GPU is in use.
    let stand_in_port = free_port();
    let _stand_in = cluster.serve_stand_in(stand_in_port);
    metadata_blocked(&cluster, &server, stand_in_port);
    gpu_servers(&cluster, &publics);

    // The hub with no running task (placed on no node here; a restart in
    // life): a manager answers /hub/ with a 503 at once, from hubgate's
    // own page, though the nodes' upstream DNS does not answer (a lookup
    // of a name with no task waits 10 s there).
    let hub_service = format!("{name}-hub");
    let place = |how: &str| {
        cluster.nodes[0].docker(&[
            "service",
            "update",
            "--detach",
            how,
            "node.hostname==nowhere",
            &hub_service,
        ]);
    };
    let node1: std::net::SocketAddr = probe.parse().unwrap();
    place("--constraint-add");
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
    place("--constraint-rm");
    crate::cluster::wait_for("the hub back", Duration::from_secs(90), || {
        let a = crate::cluster::http_get(node1, "/hub/health", &[]).ok()?;
        (a.status == 200).then_some(())
    });

    // The hub's stop returns once the server's container has ended (the
    // swarm's own 2 s drain before it signals the task, moby's
    // defaultGossipConvergeDelay, then the server's shutdown), and not
    // much later: until then the old server answers at its address, and a
    // start right after was taken for it (the hub's readiness check passed
    // 0.5 s after the spawn, then hubgate had no task to route to).
    let ran_on = task_node(&cluster.nodes[0], &server).unwrap();
    let ran_on = cluster.nodes.iter().find(|n| n.hostname == ran_on).unwrap();
    let stopping = std::time::SystemTime::now();
    user.step("stop", &[]);
    let said = std::time::SystemTime::now();
    let filter = format!("label=com.docker.swarm.service.name={server}");
    let left = ran_on.docker(&["ps", "-q", "--filter", &filter]);
    assert!(
        left.trim().is_empty(),
        "the hub said {server} stopped; still running on {}: {left}",
        ran_on.hostname
    );
    let (kill, die) = own_shutdown(ran_on, &server, stopping);
    let nanos = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let (stopping, said) = (nanos(stopping).as_nanos(), nanos(said).as_nanos());
    let secs = |from: u128, to: u128| (to as f64 - from as f64) / 1e9;
    eprintln!(
        "the stop: signalled after {:.1} s, the container ended after {:.1} s, the hub said \
         stopped after {:.1} s",
        secs(stopping, kill),
        secs(stopping, die),
        secs(stopping, said)
    );
    // Not a timing goal: a stop that missed the container's end would wait
    // out its 20 s cap.
    assert!(
        secs(die, said) < 10.0,
        "the hub said stopped {:.1} s after its container ended",
        secs(die, said)
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

    // The hub fails over: its manager stopped while it leads the swarm,
    // then another frozen.
    let scene = Scene {
        cluster: &cluster,
        name,
        port,
        storage: storage.path(),
        user: &user,
        managers: [0, 1, 2],
    };
    manager_stopped(&scene, Raft::Leader);
    follower_frozen(&scene);

    // Lose node2, a manager whose hub task does not serve (a hub failover
    // while the user's server moves: the new hub's start-up check of the
    // moving server, and the user's own stop and start, would race), and
    // the user's worker.
    if wait_serving(&cluster, 0, name, Duration::from_secs(60)) == 1 {
        move_hub_off(&scene, 1);
    }
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
        crate::cluster::wait_for("the hub", Duration::from_secs(40), || {
            let addr = p.trim_start_matches("http://").parse().unwrap();
            let a = crate::cluster::http_get(addr, "/hub/health", &[]).ok()?;
            (a.status == 200).then_some(())
        });
    }
    eprintln!("node1 and node3 serve the hub");

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
    let task_ip = running_task_ip(m1, &server);
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
    // The hub's database is on the storage too: one that moved to an empty
    // place (not the same files at a new address) starts an empty one.
    surviving.step("login", &[]);
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

    // The hub's database on PostgreSQL, on the same swarm with every node
    // back.
    cluster.nodes[1].start();
    cluster.nodes[lost_worker].start();
    wait_managers(&cluster.nodes[0], 3);
    crate::cluster::wait_for("every node ready", Duration::from_secs(90), || {
        let ls = cluster.nodes[0].docker(&["node", "ls", "--format", "{{.Status}}"]);
        (ls.lines().filter(|l| *l == "Ready").count() == 5).then_some(())
    });
    failovers_on_postgresql(&cluster);
}
