//! User-space instructions per request: the noise-free figure. Each proxy
//! runs with one worker under valgrind's callgrind, which counts every
//! instruction it executes in user space (all threads and processes; the
//! kernel's TCP work is not counted, so this is the part a proxy's own code
//! decides). A fixed number of requests is sent after a warm-up; the
//! counters are zeroed before and dumped after each pattern, and the total
//! divided by the requests. The same binaries, configurations and backend
//! as the timed scenarios; the counts repeat within a fraction of a percent.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::report::{Better, Results};
use crate::scenarios::Ctx;
use crate::targets::{Kind, Running, Setup};

const SCENARIO: &str = "9. User-space instructions per request (callgrind, 1 worker)";
/// Client connections the requests are spread over.
const CONNS: usize = 10;

/// One request, kept alive or on a new connection each time.
#[derive(Clone, Copy)]
enum Pattern {
    KeepAlive,
    Close,
}

pub(crate) fn instructions(ctx: &Ctx, results: &mut Results) -> anyhow::Result<()> {
    let counts = if ctx.quick {
        (200, 2_000)
    } else {
        (2_000, 20_000)
    };
    for kind in [Kind::Hubgate, Kind::Nginx, Kind::Haproxy] {
        if !ctx.kinds.contains(&kind) {
            continue;
        }
        let setup = Setup {
            callgrind: true,
            ..crate::scenarios::setup(kind, 1)
        };
        let t = ctx.start(&setup)?;
        let label = kind.label(1);
        let dir = t.dir().to_owned();
        let (warm, measured) = counts;
        drive(t.addr(), Pattern::KeepAlive, warm)?;
        control(&t, "-z")?;
        for (pattern, metric) in [
            (Pattern::KeepAlive, "instr/req keep-alive"),
            (Pattern::Close, "instr/req new connection"),
        ] {
            drive(t.addr(), pattern, measured)?;
            let total = dump(&t, &dir)?;
            results.push(
                SCENARIO,
                &label,
                metric,
                total as f64 / measured as f64,
                Better::Lower,
            );
        }
        eprintln!("instructions: {label} done");
    }
    Ok(())
}

/// Sends `n` GETs over `CONNS` client connections at once and reads each
/// answer whole; any answer but a 200 fails the run.
fn drive(addr: SocketAddr, pattern: Pattern, n: usize) -> anyhow::Result<()> {
    let per = n.div_ceil(CONNS);
    let threads: Vec<_> = (0..CONNS)
        .map(|_| std::thread::spawn(move || client(addr, pattern, per)))
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    Ok(())
}

fn client(addr: SocketAddr, pattern: Pattern, n: usize) -> anyhow::Result<()> {
    let request: &[u8] = match pattern {
        Pattern::KeepAlive => b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        Pattern::Close => b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    };
    let connect = || -> anyhow::Result<TcpStream> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        // Under valgrind a proxy is ~50 times slower; still bounded.
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(s)
    };
    let mut stream = connect()?;
    let mut buf = Vec::with_capacity(4096);
    for i in 0..n {
        if matches!(pattern, Pattern::Close) && i > 0 {
            stream = connect()?;
        }
        stream.write_all(request)?;
        read_response(&mut stream, &mut buf)?;
    }
    Ok(())
}

/// Reads one response (a `content-length` body) off `s`.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = res.parse(buf)? {
            if res.code != Some(200) {
                bail!("answered {:?}", res.code);
            }
            let len = res
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .context("no content-length")?;
            if buf.len() >= head + len {
                return Ok(());
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `callgrind_control <what>` for every process of the target.
fn control(t: &Running, what: &str) -> anyhow::Result<()> {
    for pid in t.pids() {
        let out = Command::new("callgrind_control")
            .arg(what)
            .arg(pid.to_string())
            .output()?;
        if !out.status.success() {
            bail!(
                "callgrind_control {what} {pid}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Dumps (and zeroes) the counters of every process of the target and
/// returns the instructions counted since the last zero.
fn dump(t: &Running, dir: &Path) -> anyhow::Result<u64> {
    let before = dump_files(dir)?;
    control(t, "-d")?;
    let mut total = 0;
    for path in dump_files(dir)?.difference(&before) {
        let text = std::fs::read_to_string(path)?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("no totals in {}", path.display()))?;
    }
    Ok(total)
}

fn dump_files(dir: &Path) -> anyhow::Result<std::collections::BTreeSet<std::path::PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("callgrind.out."))
        })
        .collect())
}
