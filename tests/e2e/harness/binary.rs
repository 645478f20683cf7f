//! The `hubgate` binary as a child process.

use super::*;

// === the binary ===

/// A `hubgate` process, killed on drop.
pub struct Hubgate {
    pub child: Child,
    pub port: u16,
    pub api_port: u16,
}

impl Hubgate {
    /// `hubgate serve --ip 127.0.0.1 --port P --api-port Q <extra>` with the
    /// test token; waits until the API answers.
    pub async fn spawn(extra: &[&str]) -> Self {
        Self::spawn_env(extra, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await
    }

    /// The same with more environment. A port that another program took
    /// between `free_port` and the child's bind (the child exits at once)
    /// is replaced by another, twice at most.
    pub async fn spawn_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        for _ in 0..2 {
            if let Some(hubgate) = Self::try_spawn_at(free_port(), extra, env).await {
                return hubgate;
            }
        }
        Self::spawn_at(free_port(), extra, env).await
    }

    /// The same on public port `port`.
    pub async fn spawn_at(port: u16, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::try_spawn_at(port, extra, env)
            .await
            .expect("hubgate exited at start (see its error above)")
    }

    /// Starts hubgate and waits until its API answers; `None` when it
    /// exited first (a port taken meanwhile).
    async fn try_spawn_at(port: u16, extra: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let api_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
        cmd.args([
            "serve",
            "--ip",
            "127.0.0.1",
            "--api-ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--api-port",
            &api_port.to_string(),
        ])
        .args(extra)
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .env_remove("CONFIGPROXY_AUTH_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
        let child = cmd.spawn().unwrap();
        let mut me = Self {
            child,
            port,
            api_port,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], api_port).into();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Its own API, not a listener someone else has on that port: the
        // child is alive and the port answers.
        while TcpStream::connect(addr).await.is_err() || me.exited() {
            if me.exited() {
                return None;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hubgate did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(me)
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn api_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.api_port).into()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_field("status", "VmHWM:")
    }

    /// A number from the `/proc/PID/FILE` line of the process that starts
    /// with `key` (kB figures without their unit).
    pub fn proc_field(&self, file: &str, key: &str) -> u64 {
        let pid = self.child.id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"))
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "hubgate did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hubgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A byte counter for streamed bodies.
pub async fn drain_body(body: Incoming) -> u64 {
    let total = AtomicU64::new(0);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            total.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
    }
    total.into_inner()
}
