//! Load generators: wrk (HTTP/1.1, optionally TLS) and h2load (HTTP/2 over
//! TLS), with the target's CPU time and memory read around each run.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::procs;
use crate::targets::Running;

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    pub(crate) errors: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// Target CPU per request, total and user-space, in µs.
    pub(crate) cpu_us: f64,
    pub(crate) user_us: f64,
    pub(crate) rss_kib: u64,
}

/// How wrk sends requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pattern {
    /// Keep-alive connections, `GET /`.
    KeepAlive,
    /// `Connection: close`: a new connection per request.
    Close,
    /// Keep-alive, `GET /user/u<random below n>/api/x`.
    RandomUsers(usize),
}

#[derive(Deserialize)]
struct WrkJson {
    requests: u64,
    duration_us: u64,
    errors: u64,
    non2xx: u64,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn lua(pattern: Pattern) -> String {
    let done = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\n{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%f,"p99":%f,"p999":%f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;
    let setup = match pattern {
        Pattern::KeepAlive => String::new(),
        Pattern::Close => "wrk.headers[\"Connection\"] = \"close\"\n".to_owned(),
        Pattern::RandomUsers(n) => format!(
            "math.randomseed(42)\nrequest = function()\n  return wrk.format(nil, \"/user/u\" .. math.random(0, {}) .. \"/api/x\")\nend\n",
            n.saturating_sub(1)
        ),
    };
    format!("{setup}{done}")
}

/// Runs wrk against `target` for `secs` with `conns` connections.
pub(crate) fn wrk(
    target: &Running,
    pattern: Pattern,
    conns: usize,
    secs: u64,
    work: &Path,
    ticks: u64,
) -> anyhow::Result<Run> {
    let script = work.join(format!("wrk-{}.lua", target.port));
    std::fs::write(&script, lua(pattern))?;
    let threads = conns.clamp(1, 2);
    let mut cmd = crate::targets::command("wrk", "1");
    cmd.args([
        "-t",
        &threads.to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--timeout",
        "5s",
    ])
    .arg("-s")
    .arg(&script)
    .arg(format!("{}/", target.url()));
    let (out, cpu, pids) = measured(target, cmd).context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no result from wrk: {text}"))?;
    let w: WrkJson = serde_json::from_str(json)?;
    if w.requests == 0 {
        bail!("wrk completed no request against {}: {text}", target.url());
    }
    Ok(finish(
        w.requests,
        w.duration_us as f64 / 1e6,
        w.errors + w.non2xx,
        (w.p50, w.p99, w.p999),
        cpu,
        ticks,
        &pids,
    ))
}

/// Runs the load generator `cmd`; its output, the target's CPU ticks (user,
/// system) spent meanwhile, and the target's processes.
fn measured(
    target: &Running,
    mut cmd: std::process::Command,
) -> std::io::Result<(std::process::Output, (u64, u64), Vec<u32>)> {
    let pids = target.pids();
    let (u0, s0) = procs::cpu_ticks(&pids);
    let out = cmd.output()?;
    let (u1, s1) = procs::cpu_ticks(&pids);
    Ok((out, (u1 - u0, s1 - s0), pids))
}

fn finish(
    requests: u64,
    secs: f64,
    errors: u64,
    lat: (f64, f64, f64),
    (user, sys): (u64, u64),
    ticks: u64,
    pids: &[u32],
) -> Run {
    let per_tick_us = 1e6 / ticks as f64;
    Run {
        rps: requests as f64 / secs,
        errors,
        p50_us: lat.0,
        p99_us: lat.1,
        p999_us: lat.2,
        cpu_us: (user + sys) as f64 * per_tick_us / requests as f64,
        user_us: user as f64 * per_tick_us / requests as f64,
        rss_kib: procs::rss_kib(pids),
    }
}

/// HTTP/2 over TLS with h2load: `conns` connections, 10 streams each.
pub(crate) fn h2load(target: &Running, conns: usize, secs: u64, ticks: u64) -> anyhow::Result<Run> {
    // No warm-up phase: the CPU read around the run must cover only the
    // requests it counts.
    let mut cmd = crate::targets::command("h2load", "1");
    cmd.args([
        "-c",
        &conns.to_string(),
        "-m",
        "10",
        "-t",
        "1",
        "-D",
        &secs.to_string(),
    ])
    .arg(format!("{}/", target.url()));
    let (out, cpu, pids) = measured(target, cmd).context("cannot run h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .with_context(|| format!("no result from h2load: {text}"))?;
    let num = |word: &str| -> u64 {
        line.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    let (done, ok) = (num("done"), num("succeeded"));
    if ok == 0 {
        bail!(
            "h2load completed no request against {}: {text}",
            target.url()
        );
    }
    let lat = text
        .lines()
        .find(|l| l.trim_start().starts_with("time for request:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(parse_h2load_time)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mean = lat.get(2).copied().unwrap_or(0.0);
    Ok(finish(
        ok,
        secs as f64,
        done - ok,
        (mean, 0.0, 0.0),
        cpu,
        ticks,
        &pids,
    ))
}

/// `12.34ms`, `56us`, `1.2s` to µs.
fn parse_h2load_time(w: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = w.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = w.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = w.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}
