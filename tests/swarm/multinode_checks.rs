//! What the multi-node test reads off the nodes: where a task runs, each
//! hubgate replica's API, a container's shutdown from the node's events,
//! the logs on failure; the swarm with hubgate's image formed, and the
//! deployment file its deployments share.

use crate::deployment::{User, deploy_images, local_file};
use crate::nodes::{Cluster, Node};

/// A deployment on the five-node swarm: the hub on the managers, reached
/// at node1's address, polling its servers every second; servers on the
/// workers, reporting activity every 5 s; `umadmin` an admin; two
/// profiles, `cpu` (the default) and `gpu` (one `NVIDIA-GPU` each); the
/// metadata service's stand-in address blocked.
pub(crate) fn multinode_file(
    cluster: &Cluster,
    name: &str,
    port: u16,
    storage: &std::path::Path,
) -> String {
    let hub = &deploy_images().hub;
    local_file(name, port, storage, "")
        .replace(
            &format!("image = \"{hub}\"\n"),
            // The hub polls its servers every second (not 30 s), so a poll
            // lands while the swarm moves the server to the other worker;
            // servers report their activity every 5 s (not 300).
            &format!(
                "image = \"{hub}\"\nextra_config = '''\n{}\n{}\n'''\n",
                "c.Spawner.poll_interval = 1",
                r#"c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "5"}"#
            ),
        )
        .replace(
            "kind = \"dummy\"",
            "kind = \"dummy\"\nadmin_users = [\"umadmin\"]",
        )
        // The hub's public address (its OAuth redirects) is node1's.
        .replace(
            "hosts = [\"localhost\"]",
            &format!("hosts = [\"{}\"]", cluster.nodes[0].ip),
        )
        .replace(
            "start_timeout = 90",
            "start_timeout = 90\nconstraints = [\"node.role==worker\"]",
        )
        .replace(
            "[network]",
            &format!(
                "[[singleuser.profiles]]\nname = \"cpu\"\ndisplay_name = \"CPU\"\ndefault = true\n\n\
                 [[singleuser.profiles]]\nname = \"gpu\"\ndisplay_name = \"GPU\"\n\
                 generic_resources = {{ NVIDIA-GPU = 1 }}\n\n\
                 [singleuser.cloud_metadata]\naddresses = [\"{}\"]\n\n[network]",
                cluster.stand_in_ip()
            ),
        )
}

/// A GPU profile's server lands on the one node that advertises a GPU
/// (node5) and holds it, on the servers' network (which the deployment's
/// network anchor keeps node5 attached to: moby/moby#44378); a second one,
/// with no GPU free, is refused clearly (the hub's message names what it
/// waits for) and leaves no service behind.
pub(crate) fn gpu_servers(cluster: &Cluster, publics: &[String]) {
    let m1 = &cluster.nodes[0];
    let first = User::new("ugpu1", publics.to_vec());
    first.step("login", &[]);
    first.step("spawn", &["--profile", "gpu"]);
    let service = format!("jupyter-{}", first.name);
    assert_eq!(task_node(m1, &service).as_deref(), Some("node5"));
    // The swarm hands the task the GPU it assigned in the container's
    // environment (DOCKER_RESOURCE_<KIND>), as the NVIDIA runtime reads it.
    let node5 = &cluster.nodes[4];
    let label = format!("label=com.docker.swarm.service.name={service}");
    let container = node5.docker(&["ps", "-q", "--filter", &label]);
    let env = node5.docker(&["inspect", &container, "--format", "{{json .Config.Env}}"]);
    let assigned: Vec<&str> = env
        .split('"')
        .filter(|kv| kv.starts_with("DOCKER_RESOURCE_"))
        .collect();
    assert!(assigned.iter().any(|kv| kv.ends_with("GPU-fake5")), "{env}");
    eprintln!("the gpu profile's server runs on node5 and holds its GPU: {assigned:?}");
    let second = User::new("ugpu2", publics.to_vec());
    second.step("login", &[]);
    let said = second.step(
        "spawn",
        &["--profile", "gpu", "--expect-refused", "--timeout", "120"],
    );
    assert!(
        said.contains("reserves 1 NVIDIA-GPU") && said.contains("insufficient resources"),
        "{said}"
    );
    crate::cluster::wait_for(
        "the refused server's service to go",
        std::time::Duration::from_secs(30),
        || {
            let out = m1.try_docker(&["service", "inspect", "jupyter-ugpu2"]);
            (!out.status.success()).then_some(())
        },
    );
    first.step("stop", &[]);
}

/// From inside the user server `server`: the host answers on its bridge
/// address, the metadata service's stand-in (an address of the same host)
/// does not: the node's rules refuse what it forwards there.
pub(crate) fn metadata_blocked(cluster: &Cluster, server: &str, port: u16) {
    let m1 = &cluster.nodes[0];
    let on = task_node(m1, server).unwrap();
    let node = cluster.nodes.iter().find(|n| n.hostname == on).unwrap();
    let label = format!("label=com.docker.swarm.service.name={server}");
    let container = node.docker(&["ps", "-q", "--filter", &label]);
    let fetch = |ip: &str| {
        let url = format!("http://{ip}:{port}/latest");
        let code = "import sys, urllib.request\n\
                    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())";
        node.try_docker(&["exec", &container, "python3", "-c", code, &url])
    };
    let open = fetch(&cluster.host_ip());
    let text = String::from_utf8_lossy(&open.stdout);
    assert!(
        open.status.success() && text.contains("instance data"),
        "the host's address from the server: {text}{}",
        String::from_utf8_lossy(&open.stderr)
    );
    let blocked = fetch(&cluster.stand_in_ip());
    let why = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        !blocked.status.success(),
        "the stand-in answered the server"
    );
    assert!(why.contains("Connection refused"), "{why}");
    let blocker = node.docker(&[
        "ps",
        "-q",
        "--filter",
        "label=com.docker.swarm.service.name=multi-metadata-block",
    ]);
    let table = node.docker(&[
        "exec",
        &blocker,
        "nft",
        "list",
        "table",
        "inet",
        "hubgate_multi_metadata",
    ]);
    eprintln!(
        "from the server on {on}: the host's {} answered, the metadata stand-in {} refused the connection ({}); {on}'s rules:\n{table}",
        cluster.host_ip(),
        cluster.stand_in_ip(),
        why.lines().last().unwrap_or_default()
    );
}

/// The node a service's running task is on.
pub(crate) fn task_node(manager: &Node, service: &str) -> Option<String> {
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
pub(crate) fn assert_service_gone(manager: &Node, service: &str) {
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
pub(crate) fn replica_api(node: &Node, service: &str, path: &str) -> Vec<serde_json::Value> {
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
pub(crate) fn discovered(node: &Node, service: &str, path: &str) -> Vec<Vec<String>> {
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
pub(crate) fn api_targets(node: &Node, service: &str, path: &str) -> Vec<Option<String>> {
    replica_api(node, service, "/api/routes")
        .iter()
        .map(|v| v[path]["target"].as_str().map(str::to_owned))
        .collect()
}

/// Every replica on the managers `managers` holds the hub's route for
/// `path` (`Some(target)`) or none does (`None`).
pub(crate) fn assert_api_routes(
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

/// When `service`'s container on `node` was signalled and when it exited
/// (nanoseconds since the epoch), from the node's events since `since`.
pub(crate) fn own_shutdown(
    node: &Node,
    service: &str,
    since: std::time::SystemTime,
) -> (u128, u128) {
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let since = secs(since).saturating_sub(1);
    let mut events = String::new();
    // The container may end after the hub's stop returned: look again, a
    // second at a time, for 15 s at most.
    for _ in 0..15 {
        // A time to end the stream at (docker events waits until then).
        let until = secs(std::time::SystemTime::now()) + 1;
        events = node.docker(&[
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
        if let (Some(kill), Some(die)) = (at("kill"), at("die")) {
            return (kill, die);
        }
    }
    panic!(
        "no kill and die events of {service} on {}: {events}",
        node.hostname
    )
}

pub(crate) fn user_state(u: &User) -> &std::path::Path {
    u.state_path()
}

/// Prints the last lines of every container's log on the managers when the
/// test fails.
pub(crate) struct LogsOnPanic<'a>(pub(crate) &'a Cluster);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A frozen daemon would never answer.
        for node in self.0.nodes.iter().filter(|n| n.is_up()) {
            node.thaw();
        }
        // Every task of every service, with its history, from a manager.
        if let Some(manager) = self.0.nodes[..3].iter().find(|n| n.is_up()) {
            let services = text(manager.try_docker(&["service", "ls", "-q"]));
            for id in services.split_whitespace() {
                let tasks = manager.try_docker(&[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
                    id,
                ]);
                eprintln!("=== tasks of {id}:\n{}", text(tasks));
            }
        }
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
                if rest.contains(" Up ") && (rest.contains("-hub.") || rest.starts_with("jupyter-"))
                {
                    eprintln!("--- {} {rest}: {}", node.hostname, addresses(node, id));
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

/// What a command printed, its errors after its output.
fn text(o: std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A hub task's overlay addresses; a user server's, and what its resolver
/// answers for the hub it reports to: which hub addresses it could reach.
fn addresses(node: &Node, id: &str) -> String {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
    let own = text(node.try_docker(&["inspect", "-f", format, id]));
    let resolve = "import os, socket, urllib.parse as u\n\
        url = os.environ.get('JUPYTERHUB_API_URL')\n\
        if url:\n    h = u.urlparse(url).hostname\n    \
        print(h, 'resolves to', sorted({a[4][0] for a in socket.getaddrinfo(h, None)}))";
    let hub = text(node.try_docker(&["exec", id, "python3", "-c", resolve]));
    format!("addresses {}; {}", own.trim(), hub.trim())
}

/// Makes the swarm with `hubgate deploy init` on node1 and the join commands
/// `hubgate deploy join-token` prints, run on the others.
pub(crate) fn form_with_hubgate(cluster: &Cluster, managers: usize) {
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
