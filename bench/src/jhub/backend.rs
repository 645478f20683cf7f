//! The jhub backend as a child process (its descriptors and CPU are its
//! own): started with `--jhub-backend N`, it prints the hub's address and
//! then each user server's, one per line, and serves until killed.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;

use anyhow::Context as _;

use super::server;

/// The running child and where it listens.
pub(crate) struct Backend {
    child: std::process::Child,
    pub(crate) hub: SocketAddr,
    pub(crate) users: Vec<SocketAddr>,
}

impl Backend {
    pub(crate) fn start(users: usize) -> anyhow::Result<Self> {
        let mut child = crate::targets::command(std::env::current_exe()?, "1")
            .arg("--jhub-backend")
            .arg(users.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("the backend's stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut addrs = Vec::with_capacity(users + 1);
        for _ in 0..=users {
            let line = lines
                .next()
                .context("the backend ended before naming its listeners")??;
            addrs.push(
                line.trim()
                    .parse::<SocketAddr>()
                    .with_context(|| format!("the backend said {line:?}"))?,
            );
        }
        let hub = addrs.remove(0);
        Ok(Self {
            child,
            hub,
            users: addrs,
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: bind, say where, serve until killed.
pub(crate) fn run(users: usize) -> anyhow::Result<()> {
    let listeners = server::bind(users)?;
    let mut out = std::io::stdout().lock();
    for l in &listeners {
        writeln!(out, "{}", l.local_addr()?)?;
    }
    out.flush()?;
    drop(out);
    server::serve(listeners)
}
