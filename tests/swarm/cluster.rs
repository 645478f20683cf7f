//! The swarm harness: the docker CLI against the machine's real single-node
//! swarm, images built by `scripts/swarm-setup`, and services that remove
//! themselves (with their network) when a test ends, pass or fail.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// The HTTP clients, a file of their own beside this one (both this crate
// and the bench's include this file by path).
#[path = "wire.rs"]
mod wire;
pub use wire::*;

const SETUP: &str = "scripts/swarm-setup (scripts/test runs it)";

/// The images the tests run, built from this checkout.
pub struct Images {
    pub hubgate: String,
    pub backend: String,
}

/// The images, after checking the engine is a swarm manager. Fails with the
/// setup command when anything is missing: a swarm test never skips.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let info = Command::new("docker")
            .args([
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker ({e}): install Docker and run {SETUP}"));
        let state = String::from_utf8_lossy(&info.stdout).trim().to_owned();
        assert!(
            info.status.success() && state == "active true",
            "no Docker engine that is a swarm manager (docker info: {state:?} {}): run {SETUP}",
            String::from_utf8_lossy(&info.stderr).trim()
        );
        Images {
            hubgate: built_image("HUBGATE_IMAGE"),
            backend: built_image("HUBGATE_BACKEND_IMAGE"),
        }
    })
}

/// The tag `scripts/swarm-setup` wrote for `key` in target/swarm-images.env,
/// after checking the engine has that image.
pub fn built_image(key: &str) -> String {
    let file = workspace_root().join("target/swarm-images.env");
    let env = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("{} is missing: run {SETUP}", file.display()));
    let image = env
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{key} missing in {}: run {SETUP}", file.display()));
    assert!(
        docker_ok(&["image", "inspect", &image]),
        "image {image} is not built: run {SETUP}"
    );
    image
}

/// The checkout's root (this file also serves the bench crate).
pub fn workspace_root() -> &'static Path {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        dir = dir.parent().expect("a workspace with a Cargo.lock");
    }
    dir
}

/// Runs `docker args` and returns its stdout; panics with stderr on failure
/// (and, when the engine did not answer, what the machine says of it).
pub fn docker(args: &[&str]) -> String {
    let out = run(args);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        panic!(
            "docker {} failed: {}{}",
            args.join(" "),
            stderr.trim(),
            unreachable_engine(&stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// When the CLI could not reach the engine: which `dockerd` processes run,
/// the socket file, free disk and memory, and the kernel's last OOM kills,
/// so a failure tells an engine that died from a socket that went away.
fn unreachable_engine(stderr: &str) -> String {
    if !stderr.contains("Cannot connect to the Docker daemon") {
        return String::new();
    }
    let look = "pgrep -a -x dockerd; ls -l /var/run/docker.sock; df -h /var/lib/docker /tmp; \
                grep MemAvailable /proc/meminfo; \
                dmesg 2>&1 | grep -iE 'out of memory|killed process|dockerd' | tail -n 5";
    let said = Command::new("sh").arg("-c").arg(look).output();
    let said = said.map_or_else(
        |e| e.to_string(),
        |o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    );
    format!(
        "\n-- the engine did not answer; the machine says:\n{}",
        said.trim()
    )
}

/// Whether `docker args` succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    run(args).status.success()
}

pub fn run(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run docker")
}

/// A name no other test run uses.
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "hgt-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free loopback port (released at once; host-mode publishing takes it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `what` to hold, polling every 100 ms, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An attachable overlay network, removed on drop (after its services).
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create(what: &str) -> Self {
        let name = unique(what);
        docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            &name,
        ]);
        Self { name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Swarm detaches task endpoints asynchronously: retry for a while.
        let start = Instant::now();
        while !docker_ok(&["network", "rm", &self.name])
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A swarm service, removed on drop.
pub struct Service {
    pub name: String,
}

impl Service {
    /// `docker service create --name <name> <args...>` (detached, no
    /// registry lookup: the images are local).
    pub fn create(name: &str, args: &[&str]) -> Self {
        let mut all = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            name,
        ];
        all.extend_from_slice(args);
        docker(&all);
        Self {
            name: name.to_owned(),
        }
    }

    /// A test backend (`PORT` 8080) on `network` with `labels`.
    pub fn backend(
        name: &str,
        network: &Network,
        replicas: u32,
        labels: &[(&str, &str)],
        env: &[&str],
    ) -> Self {
        Self::backend_with(name, network, replicas, labels, env, &[])
    }

    /// One replica of the test backend routed at `path` by labels.
    pub fn labelled(name: &str, network: &Network, path: &str) -> Self {
        let labels = [
            ("hubgate.enable", "true"),
            ("hubgate.port", "8080"),
            ("hubgate.path", path),
        ];
        Self::backend(name, network, 1, &labels, &[])
    }

    /// The same with more `docker service create` flags.
    pub fn backend_with(
        name: &str,
        network: &Network,
        replicas: u32,
        labels: &[(&str, &str)],
        env: &[&str],
        extra: &[&str],
    ) -> Self {
        let replicas = replicas.to_string();
        let service_env = format!("SERVICE={name}");
        let mut args: Vec<String> = vec![
            "--network".into(),
            network.name.clone(),
            "--replicas".into(),
            replicas,
            "--stop-grace-period".into(),
            "1s".into(),
            "--env".into(),
            service_env,
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        for e in env {
            args.push("--env".into());
            args.push((*e).to_owned());
        }
        args.extend(extra.iter().map(|e| (*e).to_owned()));
        args.push(images().backend.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::create(name, &args)
    }

    /// Running task containers of this service on this node, by ID.
    pub fn containers(&self) -> Vec<String> {
        docker(&["ps", "-q", "--no-trunc", "--filter", &self.label_filter()])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The `docker ps` filter for its containers.
    fn label_filter(&self) -> String {
        format!("label=com.docker.swarm.service.name={}", self.name)
    }

    /// The service's `docker service update` with `args`.
    pub fn update(&self, args: &[&str]) {
        let mut all = vec!["service", "update", "--detach", "--quiet"];
        all.extend_from_slice(args);
        all.push(&self.name);
        docker(&all);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = run(&["service", "rm", &self.name]);
        // Wait for its containers, so the network can go too.
        // `docker ps` itself may fail (the engine gone): a drop never
        // panics, since a panic during another's unwinding aborts the run.
        let filter = self.label_filter();
        let start = Instant::now();
        while !run(&["ps", "-q", "--filter", &filter]).stdout.is_empty()
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// hubgate running as a swarm service from the image built from the
/// Dockerfile: ports 80 and 8001 published in host mode on loopback ports,
/// the Docker socket mounted read-only, on `network`.
pub struct Hubgate {
    pub service: Service,
    pub port: u16,
    pub api_port: u16,
}

pub const TOKEN: &str = "swarm-test-token";

impl Hubgate {
    pub fn start(network: &Network, extra: &[&str]) -> Self {
        let socket = "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock,readonly";
        Self::start_with(network, extra, socket, None)
    }

    /// With the Docker API at `socket_mount` (a `--mount` value) and, when
    /// given, `DOCKER_HOST`.
    pub fn start_with(
        network: &Network,
        extra: &[&str],
        socket_mount: &str,
        docker_host: Option<&str>,
    ) -> Self {
        Self::start_as(
            &unique("hubgate"),
            network,
            extra,
            socket_mount,
            docker_host,
        )
    }

    /// The same as the service `name`.
    pub fn start_as(
        name: &str,
        network: &Network,
        extra: &[&str],
        socket_mount: &str,
        docker_host: Option<&str>,
    ) -> Self {
        let (port, api_port) = (free_port(), free_port());
        let publish = format!("mode=host,target=80,published={port}");
        let publish_api = format!("mode=host,target=8001,published={api_port}");
        let token = format!("CONFIGPROXY_AUTH_TOKEN={TOKEN}");
        let group = socket_group();
        let docker_host = format!("DOCKER_HOST={}", docker_host.unwrap_or(""));
        let mut args = vec![
            "--env",
            &docker_host,
            "--network",
            &network.name,
            "--publish",
            &publish,
            "--publish",
            &publish_api,
            "--mount",
            socket_mount,
            "--group",
            &group,
            "--env",
            &token,
            "--constraint",
            "node.role==manager",
            "--stop-grace-period",
            "2s",
            &images().hubgate,
            "serve",
            "--ip",
            "0.0.0.0",
            "--port",
            "80",
            "--api-ip",
            "0.0.0.0",
            "--api-port",
            "8001",
            "--swarm",
            "--log-level",
            "debug",
        ];
        args.extend_from_slice(extra);
        let service = Service::create(name, &args);
        let hubgate = Self {
            service,
            port,
            api_port,
        };
        wait_for(
            "hubgate to answer its health check",
            Duration::from_secs(60),
            || {
                let r = http_get(hubgate.addr(), "/_chp_healthz", &[]).ok()?;
                (r.status == 200).then_some(())
            },
        );
        hubgate
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn api(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// `GET /api/discovery` as JSON.
    pub fn discovery(&self) -> serde_json::Value {
        let auth = format!("token {TOKEN}");
        let r = http_get(self.api(), "/api/discovery", &[("Authorization", &auth)]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// The problem `GET /api/discovery` reports for `service`, once it does.
    pub fn problem(&self, service: &str) -> serde_json::Value {
        wait_for(
            "a problem in /api/discovery",
            Duration::from_secs(30),
            || {
                self.discovery()["sources"][0]["problems"]
                    .as_array()?
                    .iter()
                    .find(|p| p["service"] == service)
                    .cloned()
            },
        )
    }

    /// The PID of hubgate's container's first process, on the host.
    pub fn pid(&self) -> u32 {
        let id = &self.service.containers()[0];
        docker(&["inspect", "--format", "{{.State.Pid}}", id])
            .parse()
            .unwrap()
    }

    /// The container's logs, for failure messages.
    pub fn logs(&self) -> String {
        let Some(id) = self.service.containers().into_iter().next() else {
            return String::new();
        };
        let out = run(&["logs", &id]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

/// The group owning the Docker socket (hubgate runs as uid 10001).
fn socket_group() -> String {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/var/run/docker.sock")
        .map(|m| m.gid().to_string())
        .unwrap_or_else(|_| "0".into())
}
