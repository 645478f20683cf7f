//! `hubgate-bench`: hubgate side by side with nginx, configurable-http-proxy,
//! caddy and haproxy, in one run on one machine, with one Rust backend.
//!
//! Run it through `bench/run`, which installs the peers and load tools from
//! Debian, builds hubgate in release mode and raises the file limit. Every
//! scenario interleaves the targets round by round; the report (medians,
//! min–max, versions, machine, and hubgate ÷ peer ratios) goes to
//! `bench/results/`.

mod api;
mod backend;
mod instr;
mod jhub;
mod load;
mod procs;
mod report;
mod scenarios;
mod targets;
mod userconf;
mod versions;
mod ws;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::Parser;

use crate::report::Results;
use crate::scenarios::Ctx;
use crate::targets::{Certs, TempDir};

#[derive(Debug, Parser)]
#[command(
    name = "hubgate-bench",
    about = "Load tests: hubgate against nginx, configurable-http-proxy, caddy and haproxy"
)]
struct Args {
    /// Rounds per scenario (targets interleaved in each round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per load measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Idle websockets opened per target.
    /// (The default stays under this machine's 20,000 file descriptors per
    /// process: each tunnel costs a proxy two, plus upstream keep-alives.)
    #[arg(long, default_value_t = 8_000)]
    ws_idle: usize,
    /// Route table sizes for the scale scenario.
    #[arg(long, value_delimiter = ',', default_value = "10,10000,100000")]
    routes: Vec<usize>,
    /// Length of the soak in seconds.
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// Scenarios to run: http, tls, ws, routes, churn, soak, instr, and
    /// jhub (not in the default run: about 25 minutes of its own).
    #[arg(
        long,
        alias = "scenario",
        value_delimiter = ',',
        default_value = "http,tls,ws,routes,churn,soak,instr"
    )]
    only: Vec<String>,
    /// Proxies to measure (the others are left out of every scenario).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hubgate,nginx,haproxy,caddy,chp"
    )]
    targets: Vec<targets::Kind>,
    /// A short smoke run: one round, short measurements, small counts.
    #[arg(long)]
    quick: bool,
    /// Pin single-worker proxies to CPU 0 and the load generator and backend
    /// to CPU 1 (less noise on small machines; needs taskset).
    #[arg(long)]
    pin: bool,
    /// The hubgate binary to measure.
    #[arg(long, default_value = "target/release/hubgate")]
    hubgate: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// jhub: the user counts to measure at, ascending. Each proxy holds
    /// six descriptors per user (two websockets and a kept-alive REST
    /// connection, each with its upstream) and this machine caps a process
    /// at 20,000, so 3,000 is as far as any one proxy process can go here.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,250,500,1000,2000,3000"
    )]
    jhub_users: Vec<usize>,
    /// jhub: new users per second.
    #[arg(long, default_value_t = 50.0)]
    jhub_ramp: f64,
    /// jhub: seconds each step is measured, once its users are in.
    #[arg(long, default_value_t = 30)]
    jhub_window: u64,
    /// jhub: rounds, each stepping every target once (straight, then each
    /// proxy); cells are medians over them. One round's p99 moves by 2-4x
    /// between runs on a 2-core machine: compare tails over 3.
    #[arg(long, default_value_t = 1)]
    jhub_rounds: usize,
    /// Internal: run only the backend, print its port, serve until killed.
    #[arg(long, hide = true)]
    backend_only: bool,
    /// Internal: run only the jhub backend for N users (prints the hub's
    /// address, then each user server's), serve until killed.
    #[arg(long, hide = true)]
    jhub_backend: Option<usize>,
}

/// How many scenarios and proxies a full run has.
const SCENARIOS: usize = 7;
const TARGETS: usize = 5;

/// The backend runs in a child process, so its sockets and CPU are its own.
struct BackendProcess(std::process::Child, std::net::SocketAddr);

impl BackendProcess {
    fn start() -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        let mut child = targets::command(std::env::current_exe()?, "1")
            .arg("--backend-only")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("backend stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("backend said {line:?}"))?;
        Ok(Self(child, addr))
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or("?".into(), |kib| format!("{} GiB", kib / 1024 / 1024));
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}, Linux {kernel}")
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(users) = args.jhub_backend {
        return jhub::run_backend(users);
    }
    if args.backend_only {
        let addr = backend::start()?;
        use std::io::Write as _;
        writeln!(std::io::stdout(), "{addr}")?;
        std::io::stdout().flush()?;
        loop {
            std::thread::park();
        }
    }
    if args.quick {
        args.rounds = 1;
        args.secs = 2;
        args.ws_idle = 500;
        args.routes = vec![10, 1000];
        args.soak_secs = 20;
        args.jhub_users = vec![100];
        args.jhub_window = 5;
        args.jhub_rounds = 1;
    }
    if args.jhub_rounds == 0 {
        bail!("--jhub-rounds must be at least 1");
    }
    check_tools()?;
    if !args.hubgate.exists() {
        bail!(
            "{} does not exist: run bench/run (it builds hubgate in release mode)",
            args.hubgate.display()
        );
    }
    let repo = std::env::current_dir()?;
    let certs = Certs {
        cert: repo.join("tests/fixtures/localhost.pem"),
        key: repo.join("tests/fixtures/localhost.key"),
    };
    targets::PIN.store(args.pin, std::sync::atomic::Ordering::Relaxed);
    let backend = BackendProcess::start()?;
    let ctx = Ctx {
        hubgate: args.hubgate.clone(),
        backend: backend.1,
        certs,
        work: TempDir::new("work")?,
        ticks: procs::clock_ticks(),
        rounds: args.rounds,
        secs: args.secs,
        ws_idle: args.ws_idle,
        route_counts: args.routes.clone(),
        soak_secs: args.soak_secs,
        quick: args.quick,
        kinds: args.targets.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let versions = versions::versions(&args.hubgate);
    let mut results = Results::default();
    let mut path = PathBuf::new();
    for scenario in &args.only {
        eprintln!("== {scenario}");
        let outcome = match scenario.as_str() {
            "http" => scenarios::http(&ctx, &mut results),
            "tls" => scenarios::tls(&ctx, &mut results),
            "ws" => runtime.block_on(scenarios::websockets(&ctx, &mut results)),
            "routes" => runtime.block_on(scenarios::routes(&ctx, &mut results)),
            "churn" => runtime.block_on(scenarios::churn(&ctx, &mut results)),
            "soak" => runtime.block_on(scenarios::soak(&ctx, &mut results)),
            "instr" => instr::instructions(&ctx, &mut results),
            "jhub" => runtime.block_on(jhub::jhub(&ctx, &jhub_options(&args), &mut results)),
            other => {
                bail!("unknown scenario {other} (http, tls, ws, routes, churn, soak, instr, jhub)")
            }
        };
        if let Err(e) = outcome {
            // Keep what was measured; say what failed.
            eprintln!("scenario {scenario} failed: {e:#}");
            results.note(&format!("Scenario {scenario}"), format!("failed: {e:#}"));
        }
        // The report is rewritten after every scenario, so a late failure loses nothing.
        path = write_report(&args, &results, &versions, started.elapsed().as_secs())?;
    }
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// Every peer and load tool is installed (bench/run installs them).
fn check_tools() -> anyhow::Result<()> {
    for tool in [
        "wrk",
        "h2load",
        "nginx",
        "haproxy",
        "caddy",
        "configurable-http-proxy",
        "curl",
        "valgrind",
        "callgrind_control",
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            bail!("{tool} is not installed: run bench/run, which installs the peers from Debian");
        }
    }
    Ok(())
}

/// The jhub scenario's options, from the arguments; users behave as
/// JupyterLab does (bench README).
fn jhub_options(args: &Args) -> jhub::Options {
    jhub::Options {
        steps: args.jhub_users.clone(),
        ramp_per_sec: args.jhub_ramp,
        window: std::time::Duration::from_secs(args.jhub_window),
        rounds: args.jhub_rounds,
        habits: jhub::Habits {
            execute_every: std::time::Duration::from_secs(5),
            poll_every: std::time::Duration::from_millis(2_500),
        },
    }
}

fn write_report(
    args: &Args,
    results: &Results,
    versions: &[(String, String)],
    took: u64,
) -> anyhow::Result<PathBuf> {
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())?;
    let mut header = format!("# hubgate bench, {date}\n\n");
    let _ = writeln!(header, "- Machine: {}", machine());
    let _ = writeln!(
        header,
        "- Run: {} round(s), {} s per measurement, {} idle websockets, routes {:?}, soak {} s, scenarios {:?}, proxies {:?}, took {} s{}{}",
        args.rounds,
        args.secs,
        args.ws_idle,
        args.routes,
        args.soak_secs,
        args.only,
        args.targets,
        took,
        if args.quick {
            " (--quick smoke run)"
        } else {
            ""
        },
        if args.pin {
            "; pinned: 1-worker proxies on CPU 0, load generator and backend on CPU 1"
        } else {
            ""
        }
    );
    if args.only.iter().any(|s| s == "jhub") {
        let _ = writeln!(
            header,
            "- jhub: steps {:?} users, {} new users/s, {} s measured per step, {} round(s); one worker each (hubgate, nginx, haproxy; CHP is one process); caddy is not part of it",
            args.jhub_users, args.jhub_ramp, args.jhub_window, args.jhub_rounds
        );
    }
    let _ = writeln!(
        header,
        "- Load generator, proxies and backend share the machine; traffic is loopback only."
    );
    let _ = writeln!(
        header,
        "- Cells: median over rounds (min–max). CPU µs/req is the proxy's own user+system time divided by requests completed."
    );
    let _ = writeln!(header, "\n| program | version |\n|---|---|");
    for (name, version) in versions {
        let _ = writeln!(header, "| {name} | {version} |");
    }
    let md = results.markdown(&header);
    std::fs::create_dir_all(&args.out)?;
    // A partial run never overwrites the full report of the same day.
    let jhub_only = args.only == ["jhub"];
    let partial = !jhub_only && (args.only.len() < SCENARIOS || args.targets.len() < TARGETS);
    let name = match (args.quick, args.pin, partial) {
        (true, _, _) if jhub_only => "quick-jhub.md".to_owned(),
        (true, _, _) => "quick.md".to_owned(),
        (false, pin, partial) => format!(
            "{date}{}{}{}.md",
            if jhub_only { "-jhub" } else { "" },
            if partial { "-partial" } else { "" },
            if pin { "-pinned" } else { "" }
        ),
    };
    let path = args.out.join(name);
    std::fs::write(&path, &md)?;
    Ok(path)
}
