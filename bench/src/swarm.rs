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
    let hubgate = Hubgate::start(&net, &[]);
    let idle_empty = calls_per_second(&hubgate, args.sample_secs.min(15));
    eprintln!("idle, no services: {idle_empty:.2} calls/s");
    let (trials, created, running) = create_trials(&args, &net, hubgate.addr())?;
    let (killed, replaced) = replace_trials(&trials, hubgate.addr())?;
    let idle_trials = calls_per_second(&hubgate, args.sample_secs);
    eprintln!("idle, {} services: {idle_trials:.2} calls/s", args.trials);
    let many = many_idle(&args, &net, images);
    std::thread::sleep(Duration::from_secs(5));
    let idle_many = calls_per_second(&hubgate, args.sample_secs);
    eprintln!(
        "idle, {} services: {idle_many:.2} calls/s",
        args.services + args.trials
    );
    let mut measured = Measured {
        created,
        running,
        replaced,
        killed,
        idle: [idle_empty, idle_trials, idle_many],
        routes: hubgate.discovery()["routes"].as_array().map_or(0, Vec::len),
    };
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let md = report(&args, images, &mut measured, &date)?;
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(format!("{date}-swarm.md"));
    std::fs::write(&file, &md)?;
    eprintln!("{md}\nreport: {}", file.display());
    drop(many);
    drop(trials);
    Ok(())
}

/// The trials' services with their probe paths, create → 200 and
/// running → 200 (ms).
type Created = (Vec<(Service, String)>, Vec<f64>, Vec<f64>);

/// New labelled services, each timed until hubgate routes to it.
fn create_trials(
    args: &Args,
    net: &Network,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Created> {
    let (mut created, mut running, mut trials) = (vec![], vec![], vec![]);
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
        wait_for(
            "a new service to be routable",
            Duration::from_secs(60),
            || task_at(addr, &probe),
        );
        let t1 = SystemTime::now();
        let container = service
            .containers()
            .first()
            .cloned()
            .context("no container")?;
        created.push(ms(t0, t1));
        running.push(ms(started_at(&container)?, t1));
        eprintln!(
            "create {i}: {:.0} ms (task running -> routable {:.0} ms)",
            created[i], running[i]
        );
        trials.push((service, probe));
    }
    Ok((trials, created, running))
}

/// Each trial's task killed, timed until hubgate routes to its
/// replacement: kill → routed and replacement running → routed (ms).
fn replace_trials(
    trials: &[(Service, String)],
    addr: std::net::SocketAddr,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut killed, mut replaced) = (vec![], vec![]);
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
        wait_for(
            "the replacement to be routed",
            Duration::from_secs(60),
            || (task_at(addr, probe)? == host).then_some(()),
        );
        let t1 = SystemTime::now();
        killed.push(ms(t0, t1));
        replaced.push(ms(started_at(&new)?, t1));
        eprintln!(
            "replace {i}: {:.0} ms after kill, {:.0} ms after its start",
            killed[i], replaced[i]
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
