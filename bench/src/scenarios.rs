//! The scenarios, with targets interleaved round by round: every round starts
//! each target fresh, measures it, and stops it before the next one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api;
use crate::load::{self, Pattern};
use crate::procs;
use crate::report::{Better, Results};
use crate::targets::{self, Certs, Kind, Running, Setup, TempDir};
use crate::ws;

pub(crate) struct Ctx {
    pub(crate) hubgate: PathBuf,
    pub(crate) backend: SocketAddr,
    pub(crate) certs: Certs,
    pub(crate) work: TempDir,
    pub(crate) ticks: u64,
    pub(crate) rounds: usize,
    pub(crate) secs: u64,
    pub(crate) ws_idle: usize,
    pub(crate) route_counts: Vec<usize>,
    pub(crate) soak_secs: u64,
    /// A `--quick` smoke run (smaller fixed counts).
    pub(crate) quick: bool,
    /// The proxies asked for (`--targets`).
    pub(crate) kinds: Vec<Kind>,
}

impl Ctx {
    pub(crate) fn start(&self, setup: &Setup) -> anyhow::Result<Running> {
        targets::start(setup, self.backend, &self.hubgate, &self.certs)
    }

    /// The setups whose proxy was asked for, in their order.
    fn wanted(&self, setups: Vec<Setup>) -> Vec<Setup> {
        setups
            .into_iter()
            .filter(|s| self.kinds.contains(&s.kind))
            .collect()
    }

    fn backend_url(&self) -> String {
        format!("http://{}", self.backend)
    }
}

/// `kind` at `workers`, plain HTTP, nothing else set.
pub(crate) fn setup(kind: Kind, workers: usize) -> Setup {
    Setup {
        kind,
        workers,
        tls: false,
        routes_file: None,
        acme: false,
        callgrind: false,
        users: None,
    }
}

/// Every plain-HTTP target at equal worker counts (CHP always has one).
fn http_targets() -> Vec<Setup> {
    let mut v = Vec::new();
    for workers in [1, 2] {
        for kind in [Kind::Hubgate, Kind::Nginx, Kind::Haproxy, Kind::Caddy] {
            v.push(setup(kind, workers));
        }
    }
    v.push(setup(Kind::Chp, 1));
    v
}

/// Round `r` starts at a different target, so no target always goes first.
fn rotated<T: Clone>(items: &[T], r: usize) -> Vec<T> {
    let mut v = items.to_vec();
    let len = v.len().max(1);
    v.rotate_left(r % len);
    v
}

fn record(results: &mut Results, scenario: &str, label: &str, run: &load::Run, latency: bool) {
    results.push(scenario, label, "req/s", run.rps, Better::Higher);
    if latency {
        results.push(scenario, label, "p50 µs", run.p50_us, Better::Lower);
        results.push(scenario, label, "p99 µs", run.p99_us, Better::Lower);
        results.push(scenario, label, "p99.9 µs", run.p999_us, Better::Lower);
    }
    results.push(scenario, label, "CPU µs/req", run.cpu_us, Better::Lower);
    results.push(scenario, label, "user µs/req", run.user_us, Better::Lower);
    results.push(
        scenario,
        label,
        "RSS KiB",
        run.rss_kib as f64,
        Better::Lower,
    );
    results.push(scenario, label, "errors", run.errors as f64, Better::Lower);
}

/// 1 and 2: HTTP/1.1 keep-alive at 50 and 200 connections, and a new
/// connection per request.
pub(crate) fn http(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let targets = ctx.wanted(http_targets());
    for r in 0..ctx.rounds {
        for s in rotated(&targets, r) {
            let t = ctx.start(&s)?;
            let label = s.kind.label(s.workers);
            let _ = load::wrk(&t, Pattern::KeepAlive, 50, 1, &ctx.work.0, ctx.ticks)?; // warm-up
            for conns in [50, 200] {
                let run = load::wrk(
                    &t,
                    Pattern::KeepAlive,
                    conns,
                    ctx.secs,
                    &ctx.work.0,
                    ctx.ticks,
                )?;
                record(
                    results,
                    &format!("1. HTTP/1.1 keep-alive, {conns} connections"),
                    &label,
                    &run,
                    true,
                );
            }
            let run = load::wrk(&t, Pattern::Close, 50, ctx.secs, &ctx.work.0, ctx.ticks)?;
            record(
                results,
                "2. New connection per request, 50 clients",
                &label,
                &run,
                true,
            );
            eprintln!("round {}: {label} done", r + 1);
        }
    }
    Ok(())
}

/// 3: TLS handshakes, keep-alive HTTPS and HTTP/2, hubgate against nginx;
/// hubgate also with its certificate ACME-managed (`hubgate-acme`: loaded
/// from the ACME storage by the certificate manager and served through the
/// per-name map, as an issued certificate is).
pub(crate) fn tls(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    for workers in [1, 2] {
        for (kind, acme) in [
            (Kind::Hubgate, false),
            (Kind::Hubgate, true),
            (Kind::Nginx, false),
        ] {
            targets.push(Setup {
                kind,
                workers,
                tls: true,
                routes_file: None,
                acme,
                callgrind: false,
                users: None,
            });
        }
    }
    let targets = ctx.wanted(targets);
    for r in 0..ctx.rounds {
        for s in rotated(&targets, r) {
            let t = ctx.start(&s)?;
            let label = match s.acme {
                true => format!("hubgate-acme ({}w)", s.workers),
                false => s.kind.label(s.workers),
            };
            let run = load::wrk(&t, Pattern::Close, 50, ctx.secs, &ctx.work.0, ctx.ticks)?;
            results.push(
                "3a. TLS handshakes (new connection per request)",
                &label,
                "handshakes/s",
                run.rps,
                Better::Higher,
            );
            results.push(
                "3a. TLS handshakes (new connection per request)",
                &label,
                "CPU µs/handshake",
                run.cpu_us,
                Better::Lower,
            );
            let run = load::wrk(&t, Pattern::KeepAlive, 50, ctx.secs, &ctx.work.0, ctx.ticks)?;
            record(
                results,
                "3b. HTTPS keep-alive, 50 connections",
                &label,
                &run,
                true,
            );
            match load::h2load(&t, 50, ctx.secs, ctx.ticks) {
                Ok(run) => {
                    results.push(
                        "3c. HTTP/2 over TLS, 50 connections x 10 streams",
                        &label,
                        "req/s",
                        run.rps,
                        Better::Higher,
                    );
                    results.push(
                        "3c. HTTP/2 over TLS, 50 connections x 10 streams",
                        &label,
                        "mean µs",
                        run.p50_us,
                        Better::Lower,
                    );
                    results.push(
                        "3c. HTTP/2 over TLS, 50 connections x 10 streams",
                        &label,
                        "CPU µs/req",
                        run.cpu_us,
                        Better::Lower,
                    );
                }
                Err(e) => eprintln!("h2load against {label}: {e:#}"),
            }
            eprintln!("round {}: TLS {label} done", r + 1);
        }
    }
    Ok(())
}

/// 4: websocket round trips (direct and through each proxy) and idle cost.
pub(crate) async fn websockets(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let targets: Vec<Setup> = [
        Kind::Hubgate,
        Kind::Nginx,
        Kind::Haproxy,
        Kind::Caddy,
        Kind::Chp,
    ]
    .into_iter()
    .map(|k| setup(k, 1))
    .collect();
    let targets = ctx.wanted(targets);
    let latency_secs = ctx.secs.min(5);
    for r in 0..ctx.rounds {
        let direct = ws::latency(ctx.backend, latency_secs)
            .await
            .context("direct websocket round trips")?;
        for s in rotated(&targets, r) {
            let t = ctx.start(&s)?;
            let label = s.kind.label(s.workers);
            let l = ws::latency(t.addr(), latency_secs)
                .await
                .with_context(|| format!("websocket round trips through {label}"))?;
            let sc = "4a. Websocket round trip, one connection";
            results.push(
                sc,
                &label,
                "added p50 µs",
                l.p50_us - direct.p50_us,
                Better::Lower,
            );
            results.push(
                sc,
                &label,
                "added p99 µs",
                l.p99_us - direct.p99_us,
                Better::Lower,
            );
            results.push(sc, &label, "msgs/s", l.msgs_per_sec, Better::Higher);
            let idle = ws::idle(&t, ctx.ws_idle)
                .await
                .with_context(|| format!("idle websockets through {label}"))?;
            let sc = format!("4b. {} idle websockets", ctx.ws_idle);
            results.push(&sc, &label, "KiB/conn", idle.kib_per_conn, Better::Lower);
            results.push(&sc, &label, "opened", idle.opened as f64, Better::Higher);
            results.push(
                &sc,
                &label,
                "still echoing",
                idle.echoed as f64,
                Better::Higher,
            );
            eprintln!("round {}: websockets {label} done", r + 1);
        }
    }
    Ok(())
}

/// 5: req/s with many routes (hubgate), and API add/delete latency with
/// 10,000 routes present (hubgate and configurable-http-proxy).
pub(crate) async fn routes(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    for r in 0..ctx.rounds {
        for &n in &rotated(&ctx.route_counts, r) {
            let file = ctx.work.0.join(format!("routes-{n}.json"));
            api::routes_file(&file, n, &ctx.backend_url())?;
            let s = Setup {
                kind: Kind::Hubgate,
                workers: 1,
                tls: false,
                routes_file: Some(file),
                acme: false,
                callgrind: false,
                users: None,
            };
            let t = ctx.start(&s)?;
            let run = load::wrk(
                &t,
                Pattern::RandomUsers(n),
                50,
                ctx.secs,
                &ctx.work.0,
                ctx.ticks,
            )?;
            let label = format!("hubgate (1w), {n} routes");
            let sc = "5a. Route table scale, random user paths, 50 connections";
            results.push(sc, &label, "req/s", run.rps, Better::Higher);
            results.push(sc, &label, "p99 µs", run.p99_us, Better::Lower);
            results.push(sc, &label, "CPU µs/req", run.cpu_us, Better::Lower);
            results.push(sc, &label, "RSS KiB", run.rss_kib as f64, Better::Lower);
        }
        let present = 10_000.min(*ctx.route_counts.iter().max().unwrap_or(&10_000));
        let kinds: Vec<Kind> = [Kind::Hubgate, Kind::Chp]
            .into_iter()
            .filter(|k| ctx.kinds.contains(k))
            .collect();
        for kind in rotated(&kinds, r) {
            let t = ctx.start(&setup(kind, 1))?;
            let api_addr: SocketAddr = ([127, 0, 0, 1], t.api_port).into();
            api::load_routes(api_addr, present, &ctx.backend_url(), 8).await?;
            let [ap50, ap99, dp50, dp99] =
                api::add_delete_latency(api_addr, 500, &ctx.backend_url()).await?;
            let label = kind.label(1);
            let sc = format!("5b. REST API latency with {present} routes present");
            results.push(&sc, &label, "add p50 µs", ap50, Better::Lower);
            results.push(&sc, &label, "add p99 µs", ap99, Better::Lower);
            results.push(&sc, &label, "delete p50 µs", dp50, Better::Lower);
            results.push(&sc, &label, "delete p99 µs", dp99, Better::Lower);
        }
        eprintln!("round {}: routes done", r + 1);
    }
    Ok(())
}

/// 6: 100 route changes per second under full load.
pub(crate) async fn churn(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let users = 1000;
    for r in 0..ctx.rounds {
        let file = ctx.work.0.join("routes-churn.json");
        api::routes_file(&file, users, &ctx.backend_url())?;
        let s = Setup {
            kind: Kind::Hubgate,
            workers: 2,
            tls: false,
            routes_file: Some(file),
            acme: false,
            callgrind: false,
            users: None,
        };
        let t = Arc::new(ctx.start(&s)?);
        let quiet = load::wrk(
            &t,
            Pattern::RandomUsers(users),
            50,
            ctx.secs,
            &ctx.work.0,
            ctx.ticks,
        )?;
        let api_addr: SocketAddr = ([127, 0, 0, 1], t.api_port).into();
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(AtomicU64::new(0));
        let churner = {
            let (stop, changes, target) = (stop.clone(), changes.clone(), ctx.backend_url());
            tokio::spawn(async move {
                let mut c = api::Client::connect(api_addr).await?;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    // Re-point a live user route, or add/remove a spare one.
                    match i % 3 {
                        0 => {
                            c.add(&format!("/user/u{}", i % users as u64), &target)
                                .await?
                        }
                        1 => c.add(&format!("/churn/c{i}"), &target).await?,
                        _ => c.delete(&format!("/churn/c{}", i - 1)).await?,
                    }
                    i += 1;
                    changes.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        };
        let (work, ticks, secs, tt) = (ctx.work.0.clone(), ctx.ticks, ctx.secs, t.clone());
        let started = Instant::now();
        let busy = tokio::task::spawn_blocking(move || {
            load::wrk(&tt, Pattern::RandomUsers(users), 50, secs, &work, ticks)
        })
        .await??;
        stop.store(true, Ordering::Relaxed);
        churner.await?.context("route churn")?;
        let rate = changes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let sc = "6. Route churn under load (hubgate 2w, 1000 routes, 50 connections)";
        for (label, run) in [("without churn", &quiet), ("with ~100 changes/s", &busy)] {
            results.push(sc, label, "req/s", run.rps, Better::Higher);
            results.push(sc, label, "p99 µs", run.p99_us, Better::Lower);
            results.push(sc, label, "errors", run.errors as f64, Better::Lower);
        }
        results.push(sc, "with ~100 changes/s", "changes/s", rate, Better::Higher);
        eprintln!("round {}: churn done", r + 1);
    }
    Ok(())
}

/// 7: a bounded soak of mixed load; RSS sampled throughout.
pub(crate) async fn soak(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let t = Arc::new(ctx.start(&setup(Kind::Hubgate, 2))?);
    let deadline = Instant::now() + Duration::from_secs(ctx.soak_secs);
    let slice = 10.min(ctx.soak_secs.max(1));
    let mut samples: Vec<u64> = Vec::new();
    let mut errors = 0;
    let mut i = 0usize;
    while Instant::now() < deadline {
        let pattern = match i % 3 {
            0 => Pattern::KeepAlive,
            1 => Pattern::Close,
            _ => Pattern::RandomUsers(1),
        };
        let (tt, work, ticks) = (t.clone(), ctx.work.0.clone(), ctx.ticks);
        let run =
            tokio::task::spawn_blocking(move || load::wrk(&tt, pattern, 50, slice, &work, ticks))
                .await??;
        errors += run.errors;
        // A websocket session between HTTP slices.
        ws::latency(t.addr(), 1).await?;
        samples.push(procs::rss_kib(&t.pids()));
        i += 1;
    }
    let warm = samples.get(samples.len() / 5).copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let max = samples.iter().copied().max().unwrap_or(0);
    let sc = format!("7. Soak: {} s of mixed load (hubgate 2w)", ctx.soak_secs);
    results.push(
        &sc,
        "hubgate (2w)",
        "RSS after warm-up KiB",
        warm as f64,
        Better::Lower,
    );
    results.push(
        &sc,
        "hubgate (2w)",
        "RSS at end KiB",
        last as f64,
        Better::Lower,
    );
    results.push(
        &sc,
        "hubgate (2w)",
        "RSS max KiB",
        max as f64,
        Better::Lower,
    );
    results.push(&sc, "hubgate (2w)", "errors", errors as f64, Better::Lower);
    results.push(
        &sc,
        "hubgate (2w)",
        "samples",
        samples.len() as f64,
        Better::Higher,
    );
    Ok(())
}
