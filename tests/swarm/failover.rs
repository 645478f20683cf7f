//! The hub failing over on the multi-node swarm: which manager's hub task
//! serves, the Raft leader moved onto it, the serving node stopped or
//! frozen, and what users and the hub's state see meanwhile.

use std::time::{Duration, Instant, SystemTime};

use crate::cluster::{http_get, wait_for};
use crate::multinode_checks::replica_api;
use crate::nodes::{Cluster, Node};

/// The index of the manager whose hub task hubgate finds healthy, asked
/// through the hubgate replicas on manager `via` (None: no hub serves).
pub(crate) fn serving_hub(cluster: &Cluster, via: usize, name: &str) -> Option<usize> {
    let hubgate = format!("{name}-hubgate");
    let healthy: Vec<String> = replica_api(&cluster.nodes[via], &hubgate, "/api/discovery")
        .iter()
        .flat_map(|v| v["routes"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["path"] == "/")
        .flat_map(|r| r["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["healthy"] == true)
        .filter_map(|e| e["url"].as_str().map(str::to_owned))
        .collect();
    let ip = healthy
        .first()?
        .split("//")
        .nth(1)?
        .split(':')
        .next()?
        .to_owned();
    let manager = &cluster.nodes[via];
    // The swarm may have no leader to answer for a moment (one was just
    // lost): no answer is "not known yet", and the caller asks again.
    let ask = |args: &[&str]| {
        let out = manager.try_docker(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let ids = ask(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &format!("{name}-hub"),
    ])?;
    let node_id = ids.lines().find_map(|id| {
        let seen = ask(&[
            "inspect",
            "--format",
            "{{.NodeID}} {{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}",
            id,
        ])?;
        let (node, addrs) = seen.split_once(' ')?;
        addrs
            .split_whitespace()
            .any(|a| a.split('/').next() == Some(ip.as_str()))
            .then(|| node.to_owned())
    })?;
    let host = ask(&[
        "node",
        "inspect",
        "--format",
        "{{.Description.Hostname}}",
        &node_id,
    ])?;
    cluster.nodes.iter().position(|n| n.hostname == host)
}

/// Waits (up to 2 min) until the swarm runs a hub task on each of `all`
/// managers and the hubgate replicas on manager `via` know them all (a
/// task started while the swarm elects a leader stays unknown to discovery
/// until it has one); goes on with at least two known, and says so.
pub(crate) fn wait_hub_tasks_known(cluster: &Cluster, via: usize, name: &str, all: usize) {
    let hubgate = format!("{name}-hubgate");
    let manager = &cluster.nodes[via];
    let known = || {
        let states = manager.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}",
            &format!("{name}-hub"),
        ]);
        let running = states.lines().filter(|l| l.starts_with("Running")).count();
        let all_known = replica_api(manager, &hubgate, "/api/discovery")
            .iter()
            .all(|v| {
                let routes = v["routes"].as_array().cloned().unwrap_or_default();
                let endpoints: usize = routes
                    .iter()
                    .filter(|r| r["path"] == "/")
                    .map(|r| r["endpoints"].as_array().map_or(0, Vec::len))
                    .sum();
                endpoints >= running
            });
        (running, all_known)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = known();
    while !(seen.0 >= all && seen.1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        seen = known();
    }
    if seen.0 < all {
        eprintln!(
            "only {} of {all} hub tasks run after 2 min: going on",
            seen.0
        );
    }
    assert!(
        seen.0 >= 2 && seen.1,
        "hub tasks running and known: {seen:?}"
    );
}

/// The overlay address of the task of `service` the swarm wants running
/// (a network's own task list can still show a task that is gone).
pub(crate) fn running_task_ip(manager: &Node, service: &str) -> String {
    let id = manager.docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ]);
    let addrs = manager.docker(&[
        "inspect",
        "--format",
        "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}",
        id.lines().next().unwrap(),
    ]);
    // The first attachment is the deployment's network (no ingress: no
    // routing-mesh ports).
    let first = addrs.split_whitespace().next().unwrap();
    first.split('/').next().unwrap().to_owned()
}

/// Waits until a hub serves, as manager `via` sees it.
pub(crate) fn wait_serving(cluster: &Cluster, via: usize, name: &str, limit: Duration) -> usize {
    wait_for("a hub task to serve", limit, || {
        serving_hub(cluster, via, name)
    })
}

/// The index of the swarm's Raft leader.
pub(crate) fn leader(cluster: &Cluster, via: usize) -> usize {
    let ls =
        cluster.nodes[via].docker(&["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"]);
    let host = ls
        .lines()
        .find(|l| l.ends_with("Leader"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    cluster
        .nodes
        .iter()
        .position(|n| n.hostname == host)
        .unwrap()
}

/// Makes manager `target` the Raft leader without touching its tasks: the
/// other managers are demoted (the leader is then `target`, the only one
/// left), then promoted again.
pub(crate) fn make_leader(cluster: &Cluster, target: usize, managers: &[usize]) {
    if leader(cluster, target) == target {
        return;
    }
    let on = &cluster.nodes[target];
    let others: Vec<&str> = managers
        .iter()
        .filter(|&&m| m != target)
        .map(|&m| cluster.nodes[m].hostname.as_str())
        .collect();
    for node in &others {
        node_command(on, "demote", node);
    }
    wait_for(
        "the leader to be the only manager",
        Duration::from_secs(60),
        || (leader(cluster, target) == target).then_some(()),
    );
    for node in &others {
        node_command(on, "promote", node);
    }
    wait_managers(on, managers.len());
    managers_answer(cluster, managers);
}

/// Each of `managers` answers a manager's call itself: a node the leader
/// lists as a reachable manager may not hold its manager certificate yet,
/// and the leader's loss then left no quorum ("the swarm does not have a
/// leader" for over 90 s, seen once right after a promotion).
pub(crate) fn managers_answer(cluster: &Cluster, managers: &[usize]) {
    for &m in managers {
        let node = &cluster.nodes[m];
        wait_for(
            &format!("{} to answer as a manager", node.hostname),
            Duration::from_secs(60),
            || {
                node.try_docker(&["node", "ls", "-q"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
}

/// `docker node demote|promote NODE` on `on`, asked again while the swarm
/// answers "update out of sequence" (the node object changed meanwhile).
fn node_command(on: &Node, verb: &str, node: &str) {
    wait_for(&format!("{verb} {node}"), Duration::from_secs(30), || {
        let out = on.try_docker(&["node", verb, node]);
        if out.status.success() {
            return Some(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("out of sequence"),
            "docker node {verb} {node}: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
        None
    });
}

/// Waits until `count` managers are reachable (or lead).
pub(crate) fn wait_managers(on: &Node, count: usize) {
    wait_for("every manager reachable", Duration::from_secs(90), || {
        let ls = on.docker(&["node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}"]);
        let up = ls
            .lines()
            .filter(|l| {
                l.starts_with("Ready") && (l.ends_with("Leader") || l.ends_with("Reachable"))
            })
            .count();
        (up == count).then_some(())
    });
}

/// Whether the JupyterHub in the network namespace of process `pid`
/// answers `/hub/health` (asked from inside it: the overlay is not the
/// host's).
pub(crate) fn serves(pid: u32) -> bool {
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "curl",
            "-s",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", "--max-time", "0.5"])
        .arg("http://127.0.0.1:8081/hub/health")
        .output();
    out.is_ok_and(|o| o.stdout == b"200")
}

/// What a probe of every hub container saw.
pub(crate) struct Probed {
    pub(crate) rounds: u32,
    /// The sets of managers that served together.
    pub(crate) doubles: Vec<Vec<usize>>,
    /// Each time the set of serving managers changed, and the new set.
    pub(crate) changes: Vec<(SystemTime, Vec<usize>)>,
}

/// The hub entrypoints on this machine (`hubgate_lease.py`, each hub
/// container's first process): (node index, PID), the node read from its
/// cgroup (the nodes' daemons put containers under `hgt-nodeN`). Read
/// from /proc, so a frozen daemon is never asked.
pub(crate) fn hub_processes() -> Vec<(usize, u32)> {
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if !cmd.contains("hubgate_lease.py") || cmd.contains("--status") {
            continue;
        }
        let Ok(groups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let node = groups
            .split("hgt-node")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(n) = node {
            out.push((n - 1, pid));
        }
    }
    out
}

/// A probe of every hub container, every 200 ms, on a thread.
pub(crate) struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Probed>,
}

impl Probe {
    /// Probes every hub container every 200 ms until `finish`.
    pub(crate) fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Probed {
                rounds: 0,
                doubles: vec![],
                changes: vec![],
            };
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let serving: Vec<usize> = hub_processes()
                    .into_iter()
                    .filter(|(_, pid)| serves(*pid))
                    .map(|(m, _)| m)
                    .collect();
                seen.rounds += 1;
                if serving.len() > 1 {
                    seen.doubles.push(serving.clone());
                }
                if seen.changes.last().is_none_or(|(_, last)| *last != serving) {
                    seen.changes.push((SystemTime::now(), serving));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        Self { stop, thread }
    }

    /// What it saw.
    pub(crate) fn finish(self) -> Probed {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The first line of the hub container's log on `node` that contains
/// `text` and was written after `since`: its time.
pub(crate) fn logged_at(
    node: &Node,
    name: &str,
    text: &str,
    since: SystemTime,
) -> Option<SystemTime> {
    let ids = node.try_docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}-hub"),
    ]);
    let since_secs = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    String::from_utf8_lossy(&ids.stdout)
        .lines()
        .filter_map(|id| {
            let logs = node.try_docker(&["logs", "-t", "--since", &format!("{since_secs:.3}"), id]);
            let text_out = format!(
                "{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
            text_out
                .lines()
                .filter(|l| l.contains(text))
                .find_map(|l| parse_time(l.split_whitespace().next()?))
        })
        .min()
}

/// An RFC 3339 time as Docker's `logs -t` writes it (UTC, nanoseconds).
fn parse_time(stamp: &str) -> Option<SystemTime> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let nanos: u64 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Seconds from `a` to `b`.
pub(crate) fn secs(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map_or(0.0, |d| d.as_secs_f64())
}

/// Waits for `/hub/login` to answer 200 at `addr`, probing every 100 ms:
/// the moment it did.
pub(crate) fn first_login(addr: std::net::SocketAddr, limit: Duration) -> SystemTime {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if http_get(addr, "/hub/login", &[]).is_ok_and(|a| a.status == 200) {
            return SystemTime::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/hub/login did not answer 200 at {addr} within {limit:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_log_times_read_back() {
        let t = parse_time("2026-12-05T14:31:10.123456789Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs.as_secs(), 1_796_481_070);
        assert_eq!(secs.subsec_nanos(), 123_456_789);
    }
}
