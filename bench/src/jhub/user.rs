//! One simulated JupyterLab user, as a browser tab behaves (bench README):
//! the login burst of the page and its assets over six parallel
//! connections, then a kernel websocket with an execute request every few
//! seconds, an idle terminal websocket, and REST polls of kernels,
//! sessions, terminals and contents over a kept-alive connection, until
//! told to stop. Everything it sees goes to [`Stats`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::stats::{Jitter, Stats};
use super::wire;

/// Browsers open up to six connections to one host.
const PARALLEL: usize = 6;
/// How long any one exchange may take before it counts as an error.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How users behave; the same for every user of a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Habits {
    /// Mean time between execute requests.
    pub(crate) execute_every: Duration,
    /// Mean time between REST polls (the four endpoints in turn).
    pub(crate) poll_every: Duration,
}

/// Who the user is and where their browser connects.
pub(crate) struct User {
    pub(crate) index: usize,
    /// The proxy, or the user's server itself for the straight baseline.
    pub(crate) entry: SocketAddr,
    pub(crate) habits: Habits,
    pub(crate) stats: Arc<Stats>,
}

impl User {
    fn name(&self) -> String {
        format!("u{}", self.index)
    }

    /// Users' connections come from 127.0.2.1–8, so no one source address
    /// runs out of ports.
    fn source(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1 + (self.index % 8) as u8))
    }

    async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.source(), 0))?;
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(self.entry))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn http(&self) -> anyhow::Result<Sender> {
        let io = TokioIo::new(self.tcp().await?);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One GET on `c`, opened first if the last answer closed it (as a
    /// browser does: configurable-http-proxy answers `Connection: close`
    /// when the user's server did); the body's length.
    async fn get(&self, c: &mut Conn, rest: &str) -> anyhow::Result<usize> {
        let uri = format!("/user/{}/{rest}", self.name());
        let exchange = async {
            let mut sender = match c.take().filter(|s| !s.is_closed()) {
                Some(s) => s,
                None => self.http().await?,
            };
            sender.ready().await?;
            let req = Request::get(&uri)
                .header("host", "hub.example.org")
                .body(Empty::new())?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let close = resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let body = resp.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("{status} for {uri}");
            }
            if !close {
                *c = Some(sender);
            }
            anyhow::Ok(body.len())
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .with_context(|| format!("no answer for {uri} within {TIMEOUT:?}"))?
    }

    async fn websocket(&self, rest: &str) -> anyhow::Result<Ws> {
        let url = format!("ws://{}/user/{}/{rest}", self.entry, self.name());
        let stream = self.tcp().await?;
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(url, stream))
            .await
            .context("websocket handshake timed out")??;
        Ok(ws)
    }

    /// The page, then the assets over six connections; the first connection
    /// is kept for REST polls.
    async fn login(&self) -> anyhow::Result<Conn> {
        let started = Instant::now();
        let mut first = Some(self.http().await?);
        self.get(&mut first, &wire::asset_path(0)).await?;
        let count = wire::asset_sizes().len();
        let mut conns = vec![first];
        for _ in 1..PARALLEL {
            conns.push(Some(self.http().await?));
        }
        let fetches = conns.iter_mut().enumerate().map(|(k, c)| async move {
            for i in (1 + k..count).step_by(PARALLEL) {
                self.get(c, &wire::asset_path(i)).await?;
            }
            anyhow::Ok(())
        });
        for r in futures_util::future::join_all(fetches).await {
            r?;
        }
        self.stats.burst(started.elapsed().as_secs_f64() * 1e3);
        Ok(conns.swap_remove(0))
    }

    /// Logs in, opens the kernel and the terminal, then polls and executes
    /// until `stop` turns true.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let opened = async {
            let rest = self.login().await.context("login burst")?;
            let kernel = self
                .websocket(&format!(
                    "api/kernels/{}/channels?session_id=s{}",
                    wire::KERNEL_ID,
                    self.index
                ))
                .await
                .context("kernel websocket")?;
            let mut terminal = self
                .websocket("terminals/websocket/1")
                .await
                .context("terminal websocket")?;
            match tokio::time::timeout(TIMEOUT, terminal.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == wire::TERMINAL_SETUP => {}
                other => bail!("terminal said {other:?}, not setup"),
            }
            anyhow::Ok((rest, kernel, terminal))
        };
        let (rest, kernel, terminal) = match opened.await {
            Ok(parts) => parts,
            Err(e) => {
                self.stats.error("login", format!("{e:#}"));
                self.stats.gave_up();
                return;
            }
        };
        self.stats.ready();
        let watcher = tokio::spawn(watch_terminal(terminal, stop.clone(), self.stats.clone()));
        self.work(rest, kernel, &mut stop).await;
        let _ = watcher.await;
    }

    async fn work(&self, mut rest: Conn, mut kernel: Ws, stop: &mut watch::Receiver<bool>) {
        let mut jitter = Jitter::new(self.index as u64);
        let now = tokio::time::Instant::now();
        let mut next_exec = now + self.habits.execute_every.mul_f64(jitter.unit());
        let mut next_poll = now + self.habits.poll_every.mul_f64(jitter.unit());
        let (mut polls, mut executes) = (0usize, 0u64);
        while !*stop.borrow() {
            let at = next_exec.min(next_poll);
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep_until(at) => {}
            }
            if next_exec <= next_poll {
                executes += 1;
                match self.execute(&mut kernel, executes).await {
                    Ok(us) => self.stats.kernel(us),
                    Err(e) => {
                        self.stats.error("kernel", format!("{e:#}"));
                        return;
                    }
                }
                next_exec += jitter.around(self.habits.execute_every);
            } else {
                let endpoint = wire::POLLED[polls % wire::POLLED.len()];
                polls += 1;
                let t = Instant::now();
                match self.get(&mut rest, endpoint).await {
                    Ok(_) => self.stats.rest(t.elapsed().as_secs_f64() * 1e6),
                    Err(e) => {
                        self.stats.error("rest", format!("{e:#}"));
                        rest = None;
                    }
                }
                next_poll += jitter.around(self.habits.poll_every);
            }
        }
        let _ = kernel.close(None).await;
    }

    /// One execute request; microseconds until its `execute_reply`.
    async fn execute(&self, kernel: &mut Ws, n: u64) -> anyhow::Result<f64> {
        let msg_id = format!("{}-{n}", self.name());
        let started = Instant::now();
        kernel
            .send(Message::text(wire::execute_request(&msg_id, "s")))
            .await?;
        let reply = async {
            while let Some(msg) = kernel.next().await {
                if let Message::Text(text) = msg? {
                    if let Some(seen) = wire::read(text.as_str()) {
                        if seen.parent == msg_id && seen.msg_type == "execute_reply" {
                            return anyhow::Ok(());
                        }
                    }
                }
            }
            bail!("the kernel's websocket closed")
        };
        tokio::time::timeout(TIMEOUT, reply)
            .await
            .context("no execute_reply within 10 s")??;
        Ok(started.elapsed().as_secs_f64() * 1e6)
    }
}

type Ws = WebSocketStream<TcpStream>;
type Sender = SendRequest<Empty<Bytes>>;
/// A browser's connection: open, or to be opened at the next request.
type Conn = Option<Sender>;

/// An idle terminal: anything but silence before `stop` is an error.
async fn watch_terminal(mut terminal: Ws, mut stop: watch::Receiver<bool>, stats: Arc<Stats>) {
    tokio::select! {
        _ = stop.changed() => {
            let _ = terminal.close(None).await;
        }
        seen = terminal.next() => {
            stats.error("terminal", format!("the idle terminal's websocket gave {seen:?}"));
        }
    }
}
