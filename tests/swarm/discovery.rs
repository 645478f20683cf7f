//! Labelled services discovered through the Docker API: routing, scaling,
//! label changes under an open websocket, task replacement, removal, and
//! bad labels.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::cluster::*;

#[test]
fn a_labelled_service_is_routed_scaled_relabelled_replaced_and_removed() {
    let net = Network::create("disc");
    let hubgate = Hubgate::start(&net, &[]);
    let addr = hubgate.addr();

    // Image and user: the production image runs unprivileged and healthy.
    let container = hubgate.service.containers()[0].clone();
    assert_eq!(
        docker(&["inspect", "--format", "{{.Config.User}}", &container]),
        "10001:10001"
    );
    wait_for(
        "hubgate's HEALTHCHECK to pass",
        Duration::from_secs(40),
        || {
            let h = docker(&[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                &container,
            ]);
            (h == "healthy").then_some(())
        },
    );

    // Create → first 200.
    let name = unique("web");
    let created = Instant::now();
    let web = Service::labelled(&name, &net, "/web");
    let first = wait_for(
        "the new service to be routable",
        Duration::from_secs(60),
        || task_at(addr, "/web/x"),
    );
    println!(
        "create -> first 200 through hubgate: {:?}",
        created.elapsed()
    );
    let r = http_get(addr, "/web/x?q=1", &[]).unwrap();
    assert_eq!(
        r.json()["path"],
        "/web/x?q=1",
        "the path goes upstream as sent"
    );

    // Scale to 3: requests spread over all three tasks.
    web.update(&["--replicas", "3"]);
    let seen = wait_for("requests to reach 3 tasks", Duration::from_secs(60), || {
        let tasks: HashSet<String> = (0..12).filter_map(|_| task_at(addr, "/web/")).collect();
        (tasks.len() == 3).then_some(tasks)
    });
    assert!(seen.contains(&first));

    // A websocket opened before a label change stays open and echoing.
    let mut ws = websocket(addr, "/web/ws");
    echo(&mut ws, "before");
    web.update(&["--label-add", "hubgate.path=/moved"]);
    wait_for(
        "routing to follow the label change",
        Duration::from_secs(30),
        || {
            let moved = task_at(addr, "/moved/x").is_some();
            let old = http_get(addr, "/web/x", &[]).ok()?.status;
            (moved && old == 404).then_some(())
        },
    );
    echo(&mut ws, "after the route changed");

    // Kill a task: its replacement is used, the dead one is not.
    let victim = web.containers()[0].clone();
    let victim_host = docker(&["inspect", "--format", "{{.Config.Hostname}}", &victim]);
    let killed = Instant::now();
    docker(&["kill", &victim]);
    let replacement = wait_for(
        "a replacement task to serve",
        Duration::from_secs(60),
        || {
            let tasks: HashSet<String> = (0..12).filter_map(|_| task_at(addr, "/moved/")).collect();
            (tasks.len() == 3 && !tasks.contains(&victim_host)).then_some(tasks)
        },
    );
    println!(
        "task killed -> replacement serving: {:?} ({replacement:?})",
        killed.elapsed()
    );
    let failures = (0..30)
        .filter(|_| http_get(addr, "/moved/", &[]).map_or(true, |r| r.status != 200))
        .count();
    assert_eq!(failures, 0, "no request fails once the replacement is in");

    // Remove: the route goes away (404: no other route matches).
    drop(web);
    wait_for("the route to disappear", Duration::from_secs(30), || {
        (http_get(addr, "/moved/x", &[]).ok()?.status == 404).then_some(())
    });
    drop(ws);
}

#[test]
fn bad_labels_are_reported_by_name_while_other_services_keep_serving() {
    let net = Network::create("bad");
    let hubgate = Hubgate::start(&net, &[]);
    let addr = hubgate.addr();
    let good = unique("good");
    let bad = unique("bad");
    let _good = Service::labelled(&good, &net, "/good");
    let _bad = Service::backend(
        &bad,
        &net,
        1,
        &[
            ("hubgate.enable", "true"),
            ("hubgate.port", "eighty"),
            ("hubgate.path", "/bad"),
        ],
        &[],
    );
    wait_for("the good service to serve", Duration::from_secs(60), || {
        task_at(addr, "/good/")
    });
    let problem = hubgate.problem(&bad);
    assert_eq!(problem["label"], "hubgate.port");
    assert!(
        problem["message"].as_str().unwrap().contains("eighty"),
        "{problem}"
    );
    assert_eq!(http_get(addr, "/bad/", &[]).unwrap().status, 404);
    let logs = hubgate.logs();
    assert!(
        logs.contains("hubgate.port") && logs.contains(&bad),
        "the log names the service and label: {logs}"
    );
    assert!(task_at(addr, "/good/").is_some());
}

#[test]
fn a_service_on_no_shared_network_is_reported_and_not_routed() {
    let net = Network::create("shared");
    let other = Network::create("other");
    let hubgate = Hubgate::start(&net, &[]);
    let name = unique("lonely");
    let _lonely = Service::labelled(&name, &other, "/lonely");
    let problem = hubgate.problem(&name);
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("not on a network shared"),
        "{problem}"
    );
    // Not routed here: another deployment's hubgate may reach it, and a
    // route would claim its paths on this one (a hub's `/` took every
    // unmatched path of other tests' hubgates).
    let r = http_get(hubgate.addr(), "/lonely/", &[]).unwrap();
    assert_eq!(r.status, 404, "a service this hubgate cannot reach");
}
