//! `hubgate-bench-swarm`: how fast swarm changes reach hubgate's routes, and
//! what following the swarm costs the Docker API. Run through `bench/swarm`
//! (which runs `scripts/swarm-setup` first); the report goes to
//! `bench/results/<date>-swarm.md`.
//!
//! Measured on this machine's real swarm with hubgate's production image as
//! a service (the swarm tests' harness, `tests/swarm/cluster.rs`):
//! - create → routable: `docker service create` of a labelled service until
//!   hubgate first answers 200 from it; and task running → routable, from the
//!   task container's `StartedAt` (hubgate's own share of the delay);
//! - task replaced → routable: a task killed, from its replacement's
//!   `StartedAt` until hubgate routes to the replacement;
//! - Docker API calls per second, idle, with the trial services and with
//!   `--services` more (0 replicas each: the service list grows, the task
//!   refresh does not).
//!
//! Two hubgate services side by side, timed on the same swarm changes: one
//! on the engine's socket, one through the Docker API guard as `hubgate
//! deploy` runs it (a `hubgate docker-guard` process serving the discovery
//! policy's socket, hubgate's task mounting only that), with the ratios of
//! the two. Each change is polled through both every 5 ms, the order of the
//! two alternating: both see the same engine at the same moment, so the
//! ratios hold the guard's cost and not the swarm's drift between runs.

#[allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]
#[path = "../../tests/swarm/cluster.rs"]
mod cluster;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clap::Parser;

use cluster::{Hubgate, Images, Network, Service, docker, images, task_at, unique, wait_for};

#[derive(Debug, Parser)]
#[command(
    name = "hubgate-bench-swarm",
    about = "Swarm propagation and Docker API load of hubgate"
)]
struct Args {
    /// Services created (and tasks replaced) for the timings.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Idle services added for the API-load figure at scale.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Seconds per API-load sample (covers a 30 s resync).
    #[arg(long, default_value_t = 40)]
    sample_secs: u64,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results")]
    out: std::path::PathBuf,
    /// The hubgate binary that runs the guard.
    #[arg(long, default_value = "target/release/hubgate")]
    hubgate: std::path::PathBuf,
}

/// hubgate's uid in its image.
const HUBGATE_UID: u32 = 10001;

/// A `hubgate docker-guard` process serving the discovery policy's socket
/// in a directory of its own; stopped by its PID when dropped.
struct Guard {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Guard {
    fn start(binary: &std::path::Path, service: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.path().join("docker.sock");
        let config = serde_json::json!({"sockets": [{
            "path": socket,
            "owner": HUBGATE_UID,
            "policy": {"kind": "discovery", "service": service},
        }]});
        let file = dir.path().join("guard.json");
        std::fs::write(&file, config.to_string())?;
        let child = std::process::Command::new(binary)
            .args(["docker-guard", "--config"])
            .arg(&file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let guard = Self { child, dir };
        wait_for("the guard's socket", Duration::from_secs(10), || {
            socket.exists().then_some(())
        });
        Ok(guard)
    }

    /// hubgate's `--mount` of the guard's directory.
    fn mount(&self) -> String {
        format!(
            "type=bind,source={},target=/run/hubgate-guard",
            self.dir.path().display()
        )
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Milliseconds between two instants of the wall clock.
fn ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// A container's `State.StartedAt` on the host's clock.
fn started_at(container: &str) -> anyhow::Result<SystemTime> {
    let raw = docker(&["inspect", "--format", "{{.State.StartedAt}}", container]);
    let t =
        chrono::DateTime::parse_from_rfc3339(&raw).with_context(|| format!("StartedAt {raw:?}"))?;
    let nanos = u64::try_from(t.timestamp_nanos_opt().context("StartedAt out of range")?)?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn hostname(container: &str) -> String {
    docker(&["inspect", "--format", "{{.Config.Hostname}}", container])
}

/// p50, p95 and max of `v` (sorted in place).
fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "{:.0} | {:.0} | {:.0} | {:.0} | {}",
        at(0.5),
        at(0.95),
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

fn api_calls(hubgate: &Hubgate) -> u64 {
    hubgate.discovery()["sources"][0]["api_calls"]
        .as_u64()
        .unwrap_or(0)
}

/// Docker API calls per second hubgate makes over `secs` with nothing changing.
fn calls_per_second(hubgate: &Hubgate, secs: u64) -> f64 {
    let (c0, t0) = (api_calls(hubgate), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    (api_calls(hubgate) - c0) as f64 / t0.elapsed().as_secs_f64()
}

/// What the run measured.
struct Measured {
    /// `docker service create` → first 200, per trial (ms).
    created: Vec<f64>,
    /// New task running → first 200 (ms).
    running: Vec<f64>,
    /// Replacement task running → routed to it (ms).
    replaced: Vec<f64>,
    /// Task killed → routed to its replacement (ms).
    killed: Vec<f64>,
    /// Docker API calls per second with no service, the trials', and many.
    idle: [f64; 3],
    /// Discovered routes with every service.
    routes: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let images = images();
    let net = Network::create("bench");
    eprintln!("hubgate on the engine's socket, and hubgate through the Docker API guard");
    let direct = Hubgate::start(&net, &[]);
    let name = unique("hubgate");
    let guard = Guard::start(&args.hubgate, &name)?;
    let host = "unix:///run/hubgate-guard/docker.sock";
    let guarded = Hubgate::start_as(&name, &net, &[], &guard.mount(), Some(host));
    let [mut direct, mut guarded] = measure(&args, images, &net, [&direct, &guarded])?;
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    // Before the report's summaries sort the direct figures in place.
    let paired = guard_report(&mut direct, &mut guarded)?;
    let mut md = report(&args, images, &mut direct, &date)?;
    md.push_str(&paired);
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(format!("{date}-swarm.md"));
    std::fs::write(&file, &md)?;
    eprintln!("{md}\nreport: {}", file.display());
    Ok(())
}

/// Both hubgates' figures: the trials, then idle loads, the services made
/// removed afterwards.
fn measure(
    args: &Args,
    images: &Images,
    net: &Network,
    hubgates: [&Hubgate; 2],
) -> anyhow::Result<[Measured; 2]> {
    let idle = |secs| hubgates.map(|h| calls_per_second(h, secs));
    let idle_empty = idle(args.sample_secs.min(15));
    eprintln!("idle, no services: {idle_empty:.2?} calls/s");
    let addrs = hubgates.map(Hubgate::addr);
    let (trials, created, running) = create_trials(args, net, addrs)?;
    let (killed, replaced) = replace_trials(&trials, addrs)?;
    let idle_trials = idle(args.sample_secs);
    eprintln!("idle, {} services: {idle_trials:.2?} calls/s", args.trials);
    let many = many_idle(args, net, images);
    std::thread::sleep(Duration::from_secs(5));
    let idle_many = idle(args.sample_secs);
    eprintln!(
        "idle, {} services: {idle_many:.2?} calls/s",
        args.services + args.trials
    );
    let measured = [0, 1].map(|i| Measured {
        created: created[i].clone(),
        running: running[i].clone(),
        replaced: replaced[i].clone(),
        killed: killed[i].clone(),
        idle: [idle_empty[i], idle_trials[i], idle_many[i]],
        routes: hubgates[i].discovery()["routes"]
            .as_array()
            .map_or(0, Vec::len),
    });
    drop(many);
    drop(trials);
    Ok(measured)
}

/// When `check` first passed through each hubgate: each not yet passed is
/// asked every 5 ms, the order of the two alternating, for up to `limit`.
fn first_pass(
    addrs: [SocketAddr; 2],
    what: &str,
    limit: Duration,
    check: impl Fn(SocketAddr) -> bool,
) -> [SystemTime; 2] {
    let start = Instant::now();
    let mut at = [None; 2];
    for round in 0usize.. {
        for i in [round % 2, 1 - round % 2] {
            if at[i].is_none() && check(addrs[i]) {
                at[i] = Some(SystemTime::now());
            }
        }
        if let [Some(a), Some(b)] = at {
            return [a, b];
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    unreachable!("the rounds end by the limit")
}

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The guard's cost: each propagation median through it against direct.
fn guard_report(direct: &mut Measured, guarded: &mut Measured) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "\nThrough the Docker API guard (`hubgate docker-guard`, discovery policy), side by side \
         with the hubgate above on the same changes:\n"
    )?;
    writeln!(
        md,
        "| from → to | p50 direct | p50 guarded | guarded / direct | p50 of guarded − direct, per change (ms) |\n|---|---|---|---|---|"
    )?;
    let rows: [(&str, &mut Vec<f64>, &mut Vec<f64>); 4] = [
        (
            "`docker service create` → first 200",
            &mut direct.created,
            &mut guarded.created,
        ),
        (
            "new task running → first 200",
            &mut direct.running,
            &mut guarded.running,
        ),
        (
            "replacement running → routed",
            &mut direct.replaced,
            &mut guarded.replaced,
        ),
        (
            "task killed → routed to its replacement",
            &mut direct.killed,
            &mut guarded.killed,
        ),
    ];
    for (what, d, g) in rows {
        // Trial by trial: both vectors still in the trials' order.
        let mut paired: Vec<f64> = g.iter().zip(d.iter()).map(|(g, d)| g - d).collect();
        let paired = median(&mut paired);
        let (d, g) = (median(d), median(g));
        writeln!(
            md,
            "| {what} | {d:.0} | {g:.0} | {:.2} | {paired:+.1} |",
            g / d
        )?;
    }
    let [_, _, idle] = guarded.idle;
    writeln!(
        md,
        "\nIdle Docker API calls per second through the guard, at the most services: {idle:.2}."
    )?;
    Ok(md)
}

/// Per hubgate, one figure per trial (ms).
type PerHubgate = [Vec<f64>; 2];

/// The trials' services with their probe paths, create → 200 and
/// running → 200.
type Created = (Vec<(Service, String)>, PerHubgate, PerHubgate);

/// New labelled services, each timed until each hubgate routes to it.
fn create_trials(args: &Args, net: &Network, addrs: [SocketAddr; 2]) -> anyhow::Result<Created> {
    let (mut created, mut running, mut trials) =
        (PerHubgate::default(), PerHubgate::default(), vec![]);
    for i in 0..args.trials {
        let name = unique("prop");
        let path = format!("/p{i}");
        let t0 = SystemTime::now();
        let service = Service::backend_with(
            &name,
            net,
            1,
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "8080"),
                ("hubgate.path", &path),
            ],
            &[],
            &["--restart-delay", "0s"],
        );
        let probe = format!("{path}/");
        let t1 = first_pass(
            addrs,
            "a new service to be routable",
            Duration::from_secs(60),
            |a| task_at(a, &probe).is_some(),
        );
        let container = service
            .containers()
            .first()
            .cloned()
            .context("no container")?;
        let started = started_at(&container)?;
        for h in 0..2 {
            created[h].push(ms(t0, t1[h]));
            running[h].push(ms(started, t1[h]));
        }
        eprintln!(
            "create {i}: {:.0} / {:.0} ms direct / guarded (task running -> routable {:.0} / {:.0} ms)",
            created[0][i], created[1][i], running[0][i], running[1][i]
        );
        trials.push((service, probe));
    }
    Ok((trials, created, running))
}

/// Each trial's task killed, timed until each hubgate routes to its
/// replacement: kill → routed and replacement running → routed.
fn replace_trials(
    trials: &[(Service, String)],
    addrs: [SocketAddr; 2],
) -> anyhow::Result<(PerHubgate, PerHubgate)> {
    let (mut killed, mut replaced) = (PerHubgate::default(), PerHubgate::default());
    for (i, (service, probe)) in trials.iter().enumerate() {
        let old = service
            .containers()
            .first()
            .cloned()
            .context("no container")?;
        let t0 = SystemTime::now();
        docker(&["kill", &old]);
        let new = wait_for("a replacement task", Duration::from_secs(60), || {
            service.containers().into_iter().find(|c| *c != old)
        });
        let host = hostname(&new);
        let t1 = first_pass(
            addrs,
            "the replacement to be routed",
            Duration::from_secs(60),
            |a| task_at(a, probe).is_some_and(|t| t == host),
        );
        let started = started_at(&new)?;
        for h in 0..2 {
            killed[h].push(ms(t0, t1[h]));
            replaced[h].push(ms(started, t1[h]));
        }
        eprintln!(
            "replace {i}: {:.0} / {:.0} ms after kill, {:.0} / {:.0} ms after its start (direct / guarded)",
            killed[0][i], killed[1][i], replaced[0][i], replaced[1][i]
        );
    }
    Ok((killed, replaced))
}

/// `args.services` labelled services with no task, to weigh discovery's
/// idle cost.
fn many_idle(args: &Args, net: &Network, images: &Images) -> Vec<Service> {
    let mut many = Vec::with_capacity(args.services);
    let t0 = Instant::now();
    for _ in 0..args.services {
        let name = unique("idle");
        many.push(Service::create(
            &name,
            &[
                "--network",
                &net.name,
                "--replicas",
                "0",
                "--label",
                "hubgate.enable=true",
                "--label",
                "hubgate.port=8080",
                "--label",
                &format!("hubgate.path=/{name}"),
                &images.backend,
            ],
        ));
    }
    eprintln!(
        "created {} idle services in {:?}",
        args.services,
        t0.elapsed()
    );
    many
}

/// The report, in Markdown.
fn report(args: &Args, images: &Images, m: &mut Measured, date: &str) -> anyhow::Result<String> {
    let mut md = String::new();
    let [idle_empty, idle_trials, idle_many] = m.idle;
    let routes = m.routes;
    writeln!(md, "# hubgate swarm propagation, {date}\n")?;
    writeln!(
        md,
        "Single-node swarm on this machine (Docker {}), hubgate {} as a swarm service with",
        docker(&["version", "--format", "{{.Server.Version}}"]),
        images.hubgate
    )?;
    writeln!(
        md,
        "default discovery settings (1 s task refresh, 30 s resync), test backends from {}.",
        images.backend
    )?;
    writeln!(
        md,
        "Times in ms over {} trials; `bench/swarm` reproduces it.\n",
        args.trials
    )?;
    writeln!(
        md,
        "| from → to | p50 | p95 | min | max | n |\n|---|---|---|---|---|---|"
    )?;
    writeln!(
        md,
        "| `docker service create` → first 200 through hubgate | {} |",
        summary(&mut m.created)
    )?;
    writeln!(
        md,
        "| new task running (`StartedAt`) → first 200 | {} |",
        summary(&mut m.running)
    )?;
    writeln!(
        md,
        "| replacement task running → routed to it | {} |",
        summary(&mut m.replaced)
    )?;
    writeln!(
        md,
        "| task killed → routed to its replacement (`--restart-delay 0s`) | {} |\n",
        summary(&mut m.killed)
    )?;
    writeln!(
        md,
        "Docker API calls per second (from hubgate's own count in `GET /api/discovery`):\n"
    )?;
    writeln!(md, "| services | calls/s |\n|---|---|")?;
    writeln!(
        md,
        "| 0 | {idle_empty:.2} |\n| {} | {idle_trials:.2} |\n| {} | {idle_many:.2} |\n",
        args.trials,
        args.services + args.trials
    )?;
    writeln!(
        md,
        "With {} services hubgate holds {routes} discovered routes. For comparison, Traefik's swarm provider polls every 15 s (up to ~17 s to a new route) and makes one call per task per poll (peers.md §4).",
        args.services + args.trials
    )?;
    Ok(md)
}
