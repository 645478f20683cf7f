//! The deployment harness: a deployment file in a temporary directory,
//! `hubgate deploy` run on it against this machine's swarm (or another
//! engine, by `DOCKER_HOST`), destroyed with everything it made when the test
//! ends; and `tests/jupyterhub/swarm_drive.py` playing the user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cluster::{built_image, docker, free_port, workspace_root};

/// The images a deployment runs, built by `scripts/swarm-setup`.
pub struct DeployImages {
    pub hub: String,
    pub singleuser: String,
    pub hubgate: String,
}

pub fn deploy_images() -> DeployImages {
    crate::cluster::images();
    DeployImages {
        hub: built_image("HUBGATE_HUB_IMAGE"),
        singleuser: built_image("HUBGATE_SINGLEUSER_IMAGE"),
        hubgate: built_image("HUBGATE_IMAGE"),
    }
}

/// The text of a deployment file: `name`, plain HTTP on `port`, users'
/// files in `storage` (a local directory), the DummyAuthenticator; `extra`
/// is appended (more tables, or fields of a last `[proxy]` table).
pub fn local_file(name: &str, port: u16, storage: &Path, extra: &str) -> String {
    let i = deploy_images();
    format!(
        r#"name = "{name}"
hosts = ["localhost"]

[hub]
image = "{hub}"

[singleuser]
image = "{singleuser}"
resources = {{ cpu_limit = 1.0, memory_limit = "1G" }}
start_timeout = 90

[network]
name = "{name}-net"

[storage]
local = "{storage}"

[auth]
kind = "dummy"

{extra}

[proxy]
image = "{hubgate}"
http_port = {port}
https_port = {https}
"#,
        hub = i.hub,
        singleuser = i.singleuser,
        hubgate = i.hubgate,
        storage = storage.display(),
        https = free_port(),
    )
}

/// A deployment file and the `hubgate deploy` commands on it.
pub struct Deployment {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    /// `DOCKER_HOST` for the commands (None: the machine's engine).
    pub docker_host: Option<String>,
    kept: bool,
}

impl Deployment {
    /// Writes `text` as the deployment file of deployment `name`.
    pub fn new(name: &str, text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy.toml");
        std::fs::write(&file, text).unwrap();
        Self {
            name: name.to_owned(),
            dir,
            file,
            docker_host: None,
            kept: false,
        }
    }

    /// Leaves the deployment in place when dropped (nothing to destroy).
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// Replaces the file's text.
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.file).unwrap();
        assert!(
            text.contains(from),
            "{from:?} is not in the deployment file"
        );
        std::fs::write(&self.file, text.replace(from, to)).unwrap();
    }

    /// Runs `hubgate deploy ARGS` (the file's path where `FILE` stands).
    pub fn run(&self, args: &[&str]) -> Output {
        let file = self.file.to_str().unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "FILE" { file } else { a })
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
        cmd.arg("deploy").args(&args);
        if let Some(host) = &self.docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.output().unwrap()
    }

    /// Runs `hubgate deploy ARGS`, asserts it succeeds, returns its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hubgate deploy {} failed:\n{stdout}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `hubgate deploy ARGS`, asserts it fails, returns its output
    /// (stdout, where a plan's problems are, then stderr).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "hubgate deploy {} succeeded:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        output_text(&out)
    }

    pub fn apply(&self) -> String {
        self.ok(&["apply", "FILE"])
    }

    pub fn plan(&self) -> String {
        self.ok(&["plan", "FILE"])
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let out = self.run(&["destroy", "--purge", "--yes", "FILE"]);
        if !out.status.success() {
            eprintln!(
                "cleanup: destroy of {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A command's stdout, then its stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker <kind> inspect <name>`, parsed.
pub fn inspect(kind: &str, name: &str) -> serde_json::Value {
    let text = docker(&[kind, "inspect", name]);
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
}

/// A JupyterHub user, played by `tests/jupyterhub/swarm_drive.py`.
pub struct User {
    pub name: String,
    state: PathBuf,
    /// The published ports the user's requests go to (the first one for
    /// everything but `routed`/`unrouted`, which check them all).
    pub publics: Vec<String>,
    _dir: tempfile::TempDir,
}

impl User {
    pub fn new(name: &str, publics: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            name: name.to_owned(),
            state: dir.path().join("state.json"),
            publics,
            _dir: dir,
        }
    }

    /// The file the session (cookies, token) is kept in.
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// Runs one step; panics with its output when it fails.
    pub fn step(&self, action: &str, extra: &[&str]) -> String {
        let out = self.command(action, extra).output().unwrap();
        let text = output_text(&out);
        eprint!("{text}");
        assert!(out.status.success(), "{action} failed:\n{text}");
        text
    }

    /// Starts one step in the background (its output piped): `finish` it.
    pub fn start(&self, action: &str, extra: &[&str]) -> std::process::Child {
        self.command(action, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits for a step `start` began; its output, as `step` returns it.
    pub fn finish(&self, child: std::process::Child, action: &str) -> String {
        let out = child.wait_with_output().unwrap();
        let text = output_text(&out);
        eprint!("{text}");
        assert!(out.status.success(), "{action} failed:\n{text}");
        text
    }

    fn command(&self, action: &str, extra: &[&str]) -> Command {
        let python = workspace_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup-venv (scripts/test runs it)",
            python.display()
        );
        let mut cmd = Command::new(python);
        cmd.arg(workspace_root().join("tests/jupyterhub/swarm_drive.py"))
            .arg(action)
            .arg("--state")
            .arg(&self.state)
            .arg("--user")
            .arg(&self.name)
            .args(extra);
        for p in &self.publics {
            cmd.arg("--public").arg(p);
        }
        cmd
    }
}

/// Runs `during` while probing `/_chp_healthz` on every address each 20 ms;
/// returns each address's longest run of failed probes, and the longest
/// time no address answered.
pub fn port_gaps(
    addrs: &[std::net::SocketAddr],
    during: impl FnOnce(),
) -> (Vec<std::time::Duration>, std::time::Duration) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let addrs = addrs.to_vec();
        std::thread::spawn(move || {
            let mut down_since: Vec<Option<Instant>> = vec![None; addrs.len()];
            let mut longest = vec![Duration::ZERO; addrs.len()];
            let (mut none_since, mut none_longest) = (None::<Instant>, Duration::ZERO);
            // Bounded: at most 10 minutes of probing.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let now = Instant::now();
                let mut any = false;
                for (i, a) in addrs.iter().enumerate() {
                    let up = crate::cluster::http_get(*a, "/_chp_healthz", &[])
                        .is_ok_and(|r| r.status == 200);
                    any |= up;
                    match (up, down_since[i]) {
                        (false, None) => down_since[i] = Some(now),
                        (true, Some(t)) => {
                            longest[i] = longest[i].max(now - t);
                            down_since[i] = None;
                        }
                        _ => {}
                    }
                }
                match (any, none_since) {
                    (false, None) => none_since = Some(now),
                    (true, Some(t)) => {
                        none_longest = none_longest.max(now - t);
                        none_since = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let end = Instant::now();
            for (i, t) in down_since.iter().enumerate() {
                if let Some(t) = t {
                    longest[i] = longest[i].max(end - *t);
                }
            }
            if let Some(t) = none_since {
                none_longest = none_longest.max(end - t);
            }
            (longest, none_longest)
        })
    };
    during();
    // Let the last replica settle before the probes stop.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap()
}
