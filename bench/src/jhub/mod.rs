//! The jhub scenario: N simulated JupyterLab users through one proxy, each
//! on its own `/user/NAME/` route to a server of its own, against a backend
//! that speaks jupyter_server's wire. Users ramp in at a set rate and stay;
//! at each step (N users) the run measures the proxy's memory and CPU, the
//! kernel round trip, REST latency, login bursts and errors, then ramps on
//! to the next step, until the last step or until the proxy breaks (any
//! error, or a kernel round trip p99 past 1 s). The same users straight to
//! their servers, with no proxy, give the baseline the added round trip is
//! measured against.

mod backend;
mod server;
mod stats;
mod user;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub(crate) use backend::run as run_backend;
use stats::{Collector, Stats};
pub(crate) use user::Habits;
use user::User;

use crate::api;
use crate::procs;
use crate::report::{Better, Results};
use crate::scenarios::Ctx;
use crate::targets::{self, Kind, Running, Setup};
use crate::userconf::UserTable;

mod figures;
use figures::{Step, push_step};

/// How a run goes.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// User counts to measure at, ascending.
    pub(crate) steps: Vec<usize>,
    /// New users per second.
    pub(crate) ramp_per_sec: f64,
    /// How long each step is measured, after its users are in.
    pub(crate) window: Duration,
    /// Rounds of every target, each step measured once a round.
    pub(crate) rounds: usize,
    pub(crate) habits: Habits,
}

/// The straight baseline, or a proxy.
type Entry = Option<Kind>;

fn label(entry: Entry) -> String {
    entry.map_or_else(
        || "straight to the servers (no proxy)".to_owned(),
        |k| k.label(1),
    )
}

/// Runs the scenario for every wanted proxy, the baseline first.
pub(crate) async fn jhub(ctx: &Ctx, opts: &Options, results: &mut Results) -> anyhow::Result<()> {
    let most = opts.steps.iter().copied().max().unwrap_or(0);
    let backend = backend::Backend::start(most).context("starting the jhub backend")?;
    let table = Arc::new(UserTable {
        hub: backend.hub,
        users: (0..most)
            .map(|i| (format!("u{i}"), backend.users[i]))
            .collect(),
    });
    let mut entries: Vec<Entry> = vec![None];
    for kind in [Kind::Hubgate, Kind::Nginx, Kind::Haproxy, Kind::Chp] {
        if ctx.kinds.contains(&kind) {
            entries.push(Some(kind));
        }
    }
    for round in 1..=opts.rounds {
        eprintln!("jhub: round {round} of {}", opts.rounds);
        one_round(ctx, opts, &entries, &table, results).await;
    }
    Ok(())
}

/// Steps every target once, the straight baseline first (each proxy's
/// added round trip is against this round's).
async fn one_round(
    ctx: &Ctx,
    opts: &Options,
    entries: &[Entry],
    table: &Arc<UserTable>,
    results: &mut Results,
) {
    let mut straight: Vec<Step> = Vec::new();
    for &entry in entries {
        eprintln!("jhub: {}", label(entry));
        let (steps, broke) = match one_target(ctx, opts, entry, table).await {
            Ok(outcome) => outcome,
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        for step in &steps {
            let baseline = straight.iter().find(|s| s.users == step.users);
            push_step(results, &label(entry), step, baseline);
        }
        let sustained = steps
            .iter()
            .filter(|s| s.sustained())
            .map(|s| s.users)
            .max()
            .unwrap_or(0);
        results.push(
            "10. JupyterHub users: the most sustained",
            &label(entry),
            "users",
            sustained as f64,
            Better::Higher,
        );
        if let Some(why) = broke {
            results.note(
                "10. JupyterHub users: the most sustained",
                format!("{} broke: {why}", label(entry)),
            );
        }
        if entry.is_none() {
            straight = steps;
        }
    }
}

/// What one proxy (or none) does at each step; why it broke, if it did.
async fn one_target(
    ctx: &Ctx,
    opts: &Options,
    entry: Entry,
    table: &Arc<UserTable>,
) -> anyhow::Result<(Vec<Step>, Option<String>)> {
    let running = match entry {
        Some(kind) => Some(start(ctx, kind, table)?),
        None => None,
    };
    let api_addr = match (&running, entry) {
        (Some(r), Some(Kind::Hubgate | Kind::Chp)) => Some(([127, 0, 0, 1], r.api_port).into()),
        _ => None,
    };
    let pids = running.as_ref().map(Running::pids).unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = procs::rss_kib(&pids);
    let (stats, mut collector) = stats::stats();
    let stats = Arc::new(stats);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut steps = Vec::new();
    let mut broke = None;
    for &n in &opts.steps {
        let proxy = running.as_ref().map(Running::addr);
        let ramped = ramp(
            opts,
            table,
            (api_addr, proxy),
            n,
            (&stats, &stopped),
            &mut tasks,
        );
        if let Err(e) = ramped.await {
            broke = Some(format!("ramping to {n} users: {e:#}"));
            break;
        }
        let step = measure(ctx, opts, (&stats, &mut collector), n, &pids, idle_rss).await;
        eprintln!("jhub: {} at {n} users: {}", label(entry), step.line());
        let sustained = step.sustained();
        if !sustained {
            broke = Some(format!("at {n} users: {}", step.why()));
        }
        steps.push(step);
        if !sustained {
            break;
        }
    }
    let _ = stop.send(true);
    let all = futures_util::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .is_err()
    {
        eprintln!("jhub: some users did not stop within 30 s");
    }
    Ok((steps, broke))
}

/// Brings users in until `n` are, at the ramp's pace; each user's route is
/// added through the API first where the proxy has one (on a connection of
/// the step's own: a proxy closes one idle through a window).
async fn ramp(
    opts: &Options,
    table: &UserTable,
    (api_addr, entry): (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
    n: usize,
    (stats, stopped): (&Arc<Stats>, &tokio::sync::watch::Receiver<bool>),
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let mut api = match api_addr {
        Some(addr) => Some(api::Client::connect(addr).await?),
        None => None,
    };
    let pace = Duration::from_secs_f64(1.0 / opts.ramp_per_sec.max(0.1));
    let mut tick = tokio::time::interval(pace);
    for i in tasks.len()..n {
        tick.tick().await;
        let (name, server) = &table.users[i];
        if let Some(api) = api.as_mut() {
            api.add(&format!("/user/{name}"), &format!("http://{server}"))
                .await
                .with_context(|| format!("adding {name}'s route"))?;
        }
        let user = User {
            index: i,
            entry: entry.unwrap_or(*server),
            habits: opts.habits,
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(user.run(stopped.clone())));
    }
    Ok(())
}

/// Waits for the step's users to be in, then measures a window.
async fn measure(
    ctx: &Ctx,
    opts: &Options,
    (stats, collector): (&Stats, &mut Collector),
    n: usize,
    pids: &[u32],
    idle_rss: u64,
) -> Step {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stats.settled() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = n.saturating_sub(stats.settled());
    // Let the last bursts' idle connections age as they would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ramp = collector.drain();
    let before = procs::cpu_ticks(pids);
    stats.record(true);
    tokio::time::sleep(opts.window).await;
    stats.record(false);
    let after = procs::cpu_ticks(pids);
    let rss = procs::rss_kib(pids);
    let window = collector.drain();
    let ticks = (after.0 + after.1).saturating_sub(before.0 + before.1);
    let cpu_us = ticks as f64 * 1e6 / ctx.ticks as f64;
    Step::new(
        n,
        (!pids.is_empty()).then_some((rss, idle_rss)),
        (!pids.is_empty()).then_some(cpu_us / (n as f64 * opts.window.as_secs_f64())),
        ramp,
        window,
        late,
    )
}

/// Starts `kind` with one worker; nginx and haproxy get every route in
/// their file, the others have theirs added through the API as users come.
fn start(ctx: &Ctx, kind: Kind, table: &Arc<UserTable>) -> anyhow::Result<Running> {
    let setup = Setup {
        users: matches!(kind, Kind::Nginx | Kind::Haproxy).then(|| table.clone()),
        ..crate::scenarios::setup(kind, 1)
    };
    targets::start(&setup, table.hub, &ctx.hubgate, &ctx.certs)
}
