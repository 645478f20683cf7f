//! The proxies under test, each started with an equivalent configuration:
//! one upstream with keep-alive, websocket upgrades, logging off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::procs;
use crate::userconf::{self, UserTable};

pub(crate) const TOKEN: &str = "bench-token";
/// Where Debian installs node modules; a node binary that is not Debian's
/// own does not look there unless told.
pub(crate) const NODE_PATH: &str = "/usr/share/nodejs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    Hubgate,
    Nginx,
    Haproxy,
    Caddy,
    /// configurable-http-proxy
    Chp,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Hubgate => "hubgate",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Caddy => "caddy",
            Kind::Chp => "configurable-http-proxy",
        }
    }

    /// configurable-http-proxy is single-threaded: it always runs one process.
    pub(crate) fn label(self, workers: usize) -> String {
        match self {
            Kind::Chp => self.name().to_owned(),
            _ => format!("{} ({workers}w)", self.name()),
        }
    }
}

/// With `--pin`, single-worker proxies run on CPU 0 and the load generator
/// and backend on CPU 1, so they stop competing for the same core.
pub(crate) static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `program` run under `taskset -c cpus` when pinning is on.
pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>, cpus: &str) -> Command {
    if PIN.load(std::sync::atomic::Ordering::Relaxed) {
        let mut c = Command::new("taskset");
        c.args(["-c", cpus]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// How to start a target.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) kind: Kind,
    pub(crate) workers: usize,
    pub(crate) tls: bool,
    /// hubgate only: a routes file to start with.
    pub(crate) routes_file: Option<PathBuf>,
    /// hubgate only: serve the certificate as an ACME-managed one (from an
    /// `--acme-storage` directory; the directory URL is unreachable and the
    /// certificate far from renewal, so nothing is ordered).
    pub(crate) acme: bool,
    /// Run under valgrind's callgrind (counters controlled with
    /// `callgrind_control`, dumps in the target's directory).
    pub(crate) callgrind: bool,
    /// nginx and haproxy: every JupyterHub user's route, in their file (the
    /// jhub scenario; hubgate and CHP are told through their API instead).
    pub(crate) users: Option<std::sync::Arc<UserTable>>,
}

/// A running proxy, stopped on drop.
pub(crate) struct Running {
    pub(crate) setup: Setup,
    pub(crate) port: u16,
    pub(crate) api_port: u16,
    child: Child,
    _dir: TempDir,
}

impl Running {
    pub(crate) fn pids(&self) -> Vec<u32> {
        procs::tree(self.child.id())
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The target's own directory (configuration, logs, callgrind dumps).
    pub(crate) fn dir(&self) -> &Path {
        &self._dir.0
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.setup.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "hubgate-bench-{tag}-{}-{}",
            std::process::id(),
            crate::procs::free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Paths of the test certificate used for every TLS target.
pub(crate) struct Certs {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// What starting one target needs.
struct Launch<'a> {
    setup: &'a Setup,
    backend: SocketAddr,
    hubgate: &'a Path,
    certs: &'a Certs,
    /// The target's own temporary directory.
    dir: &'a Path,
    port: u16,
    api_port: u16,
    /// The CPUs it may use.
    cpus: &'static str,
}

impl Launch<'_> {
    /// hubgate takes configurable-http-proxy's flags, so both get the same ones.
    fn chp_flags(&self) -> Vec<String> {
        vec![
            "--ip".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            self.port.to_string(),
            "--api-ip".to_owned(),
            "127.0.0.1".to_owned(),
            "--api-port".to_owned(),
            self.api_port.to_string(),
            "--default-target".to_owned(),
            format!("http://{}", self.backend),
        ]
    }
}

pub(crate) fn start(
    setup: &Setup,
    backend: SocketAddr,
    hubgate: &Path,
    certs: &Certs,
) -> anyhow::Result<Running> {
    let dir = TempDir::new(setup.kind.name())?;
    let (port, api_port) = (crate::procs::free_port()?, crate::procs::free_port()?);
    let d = &dir.0;
    let log = std::fs::File::create(d.join("stderr.log"))?;
    let launch = Launch {
        setup,
        backend,
        hubgate,
        certs,
        dir: d,
        port,
        api_port,
        // Pin single-worker proxies to CPU 0; wider ones use every core.
        cpus: if setup.workers == 1 { "0" } else { "0-1023" },
    };
    let mut cmd = match setup.kind {
        Kind::Hubgate => hubgate_command(&launch)?,
        Kind::Nginx => nginx_command(&launch)?,
        Kind::Haproxy => haproxy_command(&launch)?,
        Kind::Caddy => caddy_command(&launch)?,
        Kind::Chp => chp_command(&launch)?,
    };
    if setup.callgrind {
        cmd = under_callgrind(&cmd, d);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", setup.kind.name()))?;
    let running = Running {
        setup: setup.clone(),
        port,
        api_port,
        child,
        _dir: dir,
    };
    // valgrind starts a program about 50 times slower.
    let ready_within = Duration::from_secs(if setup.callgrind { 120 } else { 20 });
    wait_ready(&running, ready_within).with_context(|| {
        let log = std::fs::read_to_string(running._dir.0.join("stderr.log")).unwrap_or_default();
        format!("{} did not become ready: {log}", setup.kind.name())
    })?;
    Ok(running)
}

/// hubgate, with configurable-http-proxy's flags and its own.
fn hubgate_command(l: &Launch<'_>) -> anyhow::Result<Command> {
    let setup = l.setup;
    let d = l.dir;
    let n = l.setup.workers;
    let cpus = l.cpus;
    let mut c = command(l.hubgate, cpus);
    c.arg("serve")
        .args(l.chp_flags())
        .args([
            "--workers",
            &n.to_string(),
            "--no-access-log",
            "--log-level",
            "warn",
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN);
    if setup.tls && setup.acme {
        let stored = d.join("acme/certs/localhost");
        std::fs::create_dir_all(&stored)?;
        std::fs::copy(&l.certs.cert, stored.join("cert.pem"))?;
        std::fs::copy(&l.certs.key, stored.join("key.pem"))?;
        c.args([
            "--acme-domain",
            "localhost",
            "--acme-challenge",
            "tls-alpn-01",
        ])
        .args(["--acme-directory", "https://127.0.0.1:9/dir"])
        .arg("--acme-storage")
        .arg(d.join("acme"));
    } else if setup.tls {
        c.arg("--ssl-cert")
            .arg(&l.certs.cert)
            .arg("--ssl-key")
            .arg(&l.certs.key);
    }
    if let Some(f) = &setup.routes_file {
        c.arg("--routes-file").arg(f);
    }
    Ok(c)
}

/// nginx as a JupyterHub deployment configures it (websockets, forwarded headers).
fn nginx_command(l: &Launch<'_>) -> anyhow::Result<Command> {
    let setup = l.setup;
    let d = l.dir;
    let n = l.setup.workers;
    let port = l.port;
    let backend = l.backend;
    let cpus = l.cpus;
    let listen = if setup.tls {
        format!(
            "listen 127.0.0.1:{port} ssl http2 reuseport;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_session_cache off;\n    ssl_session_tickets off;",
            l.certs.cert.display(),
            l.certs.key.display()
        )
    } else {
        format!("listen 127.0.0.1:{port} reuseport;")
    };
    let routes = match &setup.users {
        Some(table) => userconf::nginx_http(table, &listen),
        None => plain_routes(&listen, backend),
    };
    let conf = format!(
        r#"worker_processes {n};
daemon off;
master_process {master};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  # nginx closes a keep-alive connection (HTTP/1.1 and HTTP/2, client and
  # upstream side) after 1,000 requests by default; the other proxies have
  # no such cap, so neither does this configuration.
  keepalive_requests 1000000;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
{routes}}}
"#,
        d = d.display(),
        // Under callgrind: one process, still root (callgrind_control
        // cannot reach a worker that changed its user).
        master = if setup.callgrind { "off" } else { "on" },
    );
    std::fs::write(d.join("nginx.conf"), conf)?;
    let mut c = command("nginx", cpus);
    c.arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .arg("-e")
        .arg(d.join("error.log"));
    Ok(c)
}

/// nginx's `http {}` body for the one-upstream scenarios, as a JupyterHub
/// deployment configures nginx (websockets, forwarded headers).
fn plain_routes(listen: &str, backend: SocketAddr) -> String {
    format!(
        r#"  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream backend {{ server {backend}; keepalive 512; keepalive_requests 1000000; }}
  server {{
    {listen}
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 3600s;
    }}
  }}
"#
    )
}

/// haproxy in HTTP mode with keep-alive to the backend.
fn haproxy_command(l: &Launch<'_>) -> anyhow::Result<Command> {
    let setup = l.setup;
    let d = l.dir;
    let n = l.setup.workers;
    let port = l.port;
    let backend = l.backend;
    let cpus = l.cpus;
    if setup.tls {
        bail!("haproxy is not part of the TLS comparison");
    }
    let conf = match &setup.users {
        Some(table) => userconf::haproxy(table, port, n, d)?,
        None => format!(
            "global\n  nbthread {n}\n  maxconn 9800\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 3600s\n  timeout server 3600s\n  timeout tunnel 3600s\n  option http-keep-alive\n  http-reuse always\n  maxconn 9800\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  server s1 {backend}\n"
        ),
    };
    std::fs::write(d.join("haproxy.cfg"), conf)?;
    let mut c = command("haproxy", cpus);
    c.arg("-f").arg(d.join("haproxy.cfg")).arg("-db");
    Ok(c)
}

/// caddy as a plain reverse proxy.
fn caddy_command(l: &Launch<'_>) -> anyhow::Result<Command> {
    let setup = l.setup;
    let d = l.dir;
    let n = l.setup.workers;
    let port = l.port;
    let backend = l.backend;
    let cpus = l.cpus;
    if setup.tls {
        bail!("caddy is not part of the TLS comparison");
    }
    let conf = format!(
        "{{\n  auto_https off\n  admin off\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy {backend}\n}}\n"
    );
    std::fs::write(d.join("Caddyfile"), conf)?;
    let mut c = command("caddy", cpus);
    c.arg("run")
        .arg("--config")
        .arg(d.join("Caddyfile"))
        .arg("--adapter")
        .arg("caddyfile");
    c.env("GOMAXPROCS", n.to_string())
        .env("HOME", d)
        .env("XDG_DATA_HOME", d)
        .env("XDG_CONFIG_HOME", d);
    Ok(c)
}

/// configurable-http-proxy with the same flags as hubgate.
fn chp_command(l: &Launch<'_>) -> anyhow::Result<Command> {
    let setup = l.setup;
    let cpus = l.cpus;
    if setup.tls {
        bail!("configurable-http-proxy is not part of the TLS comparison");
    }
    let mut c = command("configurable-http-proxy", cpus);
    c.args(l.chp_flags())
        .args(["--log-level", "error"])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .env("NODE_PATH", NODE_PATH);
    Ok(c)
}

/// `cmd` (program, arguments, environment) run under callgrind, following
/// forked children (nginx's workers), each dumping into `dir`.
fn under_callgrind(cmd: &Command, dir: &Path) -> Command {
    let mut c = Command::new("valgrind");
    c.arg("--tool=callgrind")
        .arg("--trace-children=yes")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out.%p",
            dir.display()
        ))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            c.env(key, value);
        }
    }
    c
}

fn wait_ready(r: &Running, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                &format!("{}/ready", r.url()),
            ])
            .output()?;
        if out.stdout == b"200" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no 200 from {} within {within:?}", r.url());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
