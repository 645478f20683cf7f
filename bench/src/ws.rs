//! Websocket scenarios: round-trip latency on one connection, and the
//! memory a proxy spends on idle connections.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::procs;
use crate::targets::Running;

type Ws = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream).await?;
    Ok(ws)
}

async fn echo(ws: &mut Ws, payload: &str) -> anyhow::Result<()> {
    ws.send(Message::text(payload)).await?;
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(m))) if m.is_text() => Ok(()),
        Ok(other) => bail!("no echo, got {other:?}"),
        Err(_) => bail!("no echo within 10 s"),
    }
}

/// Round trips on one connection for `secs`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) msgs_per_sec: f64,
}

pub(crate) async fn latency(addr: SocketAddr, secs: u64) -> anyhow::Result<Latency> {
    let mut ws = connect(addr, "/ws/latency").await?;
    for _ in 0..200 {
        echo(&mut ws, "warm-up").await?;
    }
    let mut samples = Vec::with_capacity(200_000);
    let started = Instant::now();
    let payload = "x".repeat(64);
    while started.elapsed() < Duration::from_secs(secs) && samples.len() < 2_000_000 {
        let t = Instant::now();
        echo(&mut ws, &payload).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed().as_secs_f64();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Ok(Latency {
        p50_us: at(0.5),
        p99_us: at(0.99),
        msgs_per_sec: samples.len() as f64 / elapsed,
    })
}

/// Memory per idle websocket, and whether all of them still echo.
#[derive(Debug, Clone, Default)]
pub(crate) struct Idle {
    pub(crate) kib_per_conn: f64,
    pub(crate) echoed: usize,
    pub(crate) opened: usize,
}

pub(crate) async fn idle(target: &Running, n: usize) -> anyhow::Result<Idle> {
    let addr = target.addr();
    // Warm the proxy up, so allocator arenas and pools exist before the baseline.
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(connect(addr, "/ws/warm").await?);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procs::rss_kib(&target.pids());
    let mut sockets = Vec::with_capacity(n);
    let batch = 250;
    for start in (0..n).step_by(batch) {
        let opened = futures_util::future::join_all(
            (start..(start + batch).min(n)).map(|_| connect(addr, "/ws/idle")),
        )
        .await;
        for ws in opened {
            sockets.push(ws.context("opening idle websockets")?);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procs::rss_kib(&target.pids());
    let mut echoed = 0;
    for chunk in sockets.chunks_mut(batch) {
        let results =
            futures_util::future::join_all(chunk.iter_mut().map(|ws| echo(ws, "still there?")))
                .await;
        echoed += results.iter().filter(|r| r.is_ok()).count();
    }
    let opened = sockets.len();
    drop(sockets);
    Ok(Idle {
        kib_per_conn: after.saturating_sub(before) as f64 / opened as f64,
        echoed,
        opened,
    })
}
