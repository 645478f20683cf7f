//! A multi-node swarm on this machine: one `dockerd` per network namespace
//! (reference: docker-swarm.md §14), each with its own root filesystem view
//! (a private `/run`, so its containers' `/var/run/docker.sock` is its own),
//! hostname, data root and address on a bridge the test makes. Everything
//! is torn down by the PIDs and names the test made.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node: its daemon and how to reach it.
pub struct Node {
    pub hostname: String,
    /// The node's address on the test bridge.
    pub ip: String,
    /// `unix://…` socket of its engine, reachable from the host.
    pub host: String,
    netns: String,
    /// How its daemon starts (`launch`), to start it again.
    script: String,
    log: PathBuf,
    dockerd: std::cell::RefCell<Option<Child>>,
}

impl Node {
    /// `docker -H <this node> args`; panics on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.try_docker(args);
        assert!(
            out.status.success(),
            "docker -H {} {} failed: {}",
            self.hostname,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn try_docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .output()
            .unwrap()
    }

    /// Whether its daemon runs.
    pub fn is_up(&self) -> bool {
        self.dockerd.borrow().is_some()
    }

    /// Starts its daemon again after `stop` (same data root: it rejoins its
    /// swarm) and waits until it answers.
    pub fn start(&self) {
        assert!(!self.is_up(), "{} runs already", self.hostname);
        *self.dockerd.borrow_mut() = Some(launch(&self.script, &self.log));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.try_docker(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the daemon of {} did not start again: see {}",
                self.hostname,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Freezes its daemon (SIGSTOP): its containers and network go on,
    /// but the node answers neither the swarm nor its own containers.
    pub fn freeze(&self) {
        if let Some(child) = self.dockerd.borrow().as_ref() {
            signal(child.id(), "STOP");
        }
    }

    /// Lets a frozen daemon go on (SIGCONT).
    pub fn thaw(&self) {
        if let Some(child) = self.dockerd.borrow().as_ref() {
            signal(child.id(), "CONT");
        }
    }

    /// Stops its daemon (SIGTERM by PID, SIGKILL after 30 s) and every
    /// process left in its namespace: the node is gone.
    pub fn stop(&self) {
        let child = self.dockerd.borrow_mut().take();
        if let Some(mut child) = child {
            signal(child.id(), "CONT");
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_namespace(&self.netns);
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Kills the processes left in network namespace `netns` (containers'
/// processes and shims of a stopped node: all this test's).
fn kill_namespace(netns: &str) {
    let out = Command::new("ip").args(["netns", "pids", netns]).output();
    if let Ok(out) = out {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// Removes what an earlier run that was killed (so never dropped its
/// cluster) left: namespaces `hgn*`, bridges `hgbr*`, their FORWARD rules
/// and directories. Only this test makes such names.
fn sweep_leftovers() {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let ns = line.split_whitespace().next().unwrap_or_default();
        if ns.starts_with("hgn") {
            kill_namespace(ns);
            sh_quiet(&format!("ip netns del {ns}"));
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        if name.starts_with("hgbr") {
            sh_quiet(&format!(
                "iptables -D FORWARD -i {name} -j ACCEPT; iptables -D FORWARD -o {name} -j ACCEPT; ip link del {name}"
            ));
        }
    }
    sh_quiet("rm -rf /tmp/hgt-nodes-*");
}

fn sh(cmd: &str) {
    let status = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(status.success(), "failed: {cmd}");
}

fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(Stdio::null())
        .status();
}

/// The nodes, a bridge joining them to the host, and their swarm.
pub struct Cluster {
    pub nodes: Vec<Node>,
    bridge: String,
    dir: PathBuf,
    /// The bridge's /24, e.g. `10.77.3`.
    net: String,
}

impl Cluster {
    /// Starts `count` daemons (no swarm yet), named node1…nodeN; the nodes
    /// `gpus` names (indexes) advertise a fake GPU each, a Swarm generic
    /// resource `NVIDIA-GPU` (the daemon's `node-generic-resources`, as a
    /// node with a real one does).
    pub fn start(count: usize, gpus: &[usize]) -> Self {
        for tool in ["ip", "iptables", "nsenter", "unshare", "dockerd"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is missing: run scripts/test (it installs iproute2, iptables and util-linux)"
            );
        }
        let id = std::process::id() % 10_000;
        sweep_leftovers();
        let bridge = format!("hgbr{id}");
        let net = format!("10.{}.{}", 200 + id % 50, id % 250);
        let dir = PathBuf::from(format!("/tmp/hgt-nodes-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!(
            "ip link add {bridge} type bridge && ip addr add {net}.1/24 dev {bridge} && ip link set {bridge} up"
        ));
        // The host's Docker sets FORWARD to DROP: let the bridge's frames through.
        sh(&format!(
            "iptables -I FORWARD -i {bridge} -j ACCEPT && iptables -I FORWARD -o {bridge} -j ACCEPT"
        ));
        let mut cluster = Self {
            nodes: vec![],
            bridge,
            dir,
            net,
        };
        for n in 1..=count {
            let gpu = gpus.contains(&(n - 1)).then(|| format!("GPU-fake{n}"));
            cluster.add_node(n, gpu.as_deref());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in &cluster.nodes {
            while !node.try_docker(&["info"]).status.success() {
                assert!(
                    Instant::now() < deadline,
                    "the daemon of {} did not start: see {}",
                    node.hostname,
                    cluster.dir.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        cluster
    }

    fn add_node(&mut self, n: usize, gpu: Option<&str>) {
        let id = std::process::id() % 10_000;
        let hostname = format!("node{n}");
        let netns = format!("hgn{id}-{n}");
        let veth = format!("hgv{id}n{n}");
        let ip = format!("{}.{}", self.net, 10 + n);
        sh(&format!(
            "ip netns add {netns} && ip link add {veth} type veth peer name eth0 netns {netns} && \
             ip link set {veth} master {bridge} up && \
             ip -n {netns} addr add {ip}/24 dev eth0 && ip -n {netns} link set eth0 up && ip -n {netns} link set lo up",
            bridge = self.bridge
        ));
        let root = self.dir.join(&hostname);
        std::fs::create_dir_all(&root).unwrap();
        let config = match gpu {
            Some(id) => serde_json::json!({"node-generic-resources": [format!("NVIDIA-GPU={id}")]}),
            None => serde_json::json!({}),
        };
        std::fs::write(root.join("daemon.json"), config.to_string()).unwrap();
        let sock = root.join("docker.sock");
        let r = root.display();
        // A private /run (opened netns first), its own hostname, then the
        // daemon inside the node's network namespace.
        let script = format!(
            "exec 3</run/netns/{netns}; hostname {hostname}; mount -t tmpfs tmpfs /run; \
             exec nsenter --net=/proc/self/fd/3 dockerd --data-root {r}/data --config-file {r}/daemon.json \
             --storage-driver overlay2 --cgroup-parent hgt-{hostname} -H unix:///var/run/docker.sock -H unix://{sock}",
            sock = sock.display()
        );
        let log = root.join("dockerd.log");
        let child = launch(&script, &log);
        self.nodes.push(Node {
            hostname,
            ip,
            host: format!("unix://{}", sock.display()),
            netns,
            script,
            log,
            dockerd: std::cell::RefCell::new(Some(child)),
        });
    }

    /// The host's address on the nodes' bridge (a server the test runs on
    /// the host is reached there).
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.net)
    }

    /// An address of the host's on the nodes' bridge that stands in for the
    /// cloud's metadata service (the test's own, never the real one).
    pub fn stand_in_ip(&self) -> String {
        format!("{}.254", self.net)
    }

    /// Serves a stand-in of the metadata service on the host at
    /// `stand_in_ip` (and every other address of the host) on `port`: a
    /// Python HTTP server, stopped by its PID when the guard drops.
    pub fn serve_stand_in(&self, port: u16) -> StandIn {
        let ip = self.stand_in_ip();
        sh(&format!("ip addr add {ip}/32 dev {}", self.bridge));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("latest"), "instance data").unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "0.0.0.0", &port.to_string()])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stand_in = StandIn {
            child,
            _dir: dir,
            ip,
            bridge: self.bridge.clone(),
        };
        // Serving before it is asked (Python takes a moment to start).
        let addr: std::net::SocketAddr = format!("{}:{port}", stand_in.ip).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the stand-in does not serve on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stand_in
    }

    /// `http://IP:port` of the first `count` nodes (the managers).
    pub fn publics(&self, count: usize, port: u16) -> Vec<String> {
        self.nodes[..count]
            .iter()
            .map(|n| format!("http://{}:{port}", n.ip))
            .collect()
    }

    /// Copies `image` from the host's engine onto `nodes` (indexes).
    pub fn load(&self, image: &str, nodes: &[usize]) {
        let tar = self
            .dir
            .join(format!("{}.tar", image.replace(['/', ':'], "_")));
        if !tar.exists() {
            sh(&format!("docker save -o {} {image}", tar.display()));
        }
        for &n in nodes {
            self.nodes[n].docker(&["load", "-q", "-i", tar.to_str().unwrap()]);
        }
    }
}

/// The metadata service's stand-in (`Cluster::serve_stand_in`).
pub struct StandIn {
    child: Child,
    _dir: tempfile::TempDir,
    ip: String,
    bridge: String,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        sh_quiet(&format!("ip addr del {}/32 dev {}", self.ip, self.bridge));
    }
}

/// Starts a node's daemon by its `script` (in a mount and UTS namespace
/// of its own), its output appended to `log`.
fn launch(script: &str, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("unshare")
        .args([
            "--mount",
            "--uts",
            "--propagation",
            "slave",
            "sh",
            "-c",
            script,
        ])
        .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
        for node in &self.nodes {
            sh_quiet(&format!("ip netns del {}", node.netns));
        }
        let b = &self.bridge;
        sh_quiet(&format!(
            "iptables -D FORWARD -i {b} -j ACCEPT; iptables -D FORWARD -o {b} -j ACCEPT; ip link del {b}"
        ));
        // Data roots hold overlay directories of stopped daemons only.
        sh_quiet(&format!("rm -rf {}", self.dir.display()));
    }
}
