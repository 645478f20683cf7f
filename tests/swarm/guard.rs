//! hubgate's Docker API guard (`hubgate docker-guard`) on this machine's
//! engine: hubgate's discovery, reaching the engine only through the
//! guard's discovery socket, routes a labelled service; a probe from
//! hubgate's position (its user, the guarded socket's directory and
//! nothing else) has every call an attacker would make refused, sees no
//! user's token in any service, and nothing it tried exists afterwards.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::{
    Hubgate, Network, Service, docker, task_at, unique, wait_for, workspace_root,
};
use crate::deployment::deploy_images;

/// hubgate's uid in its image.
const HUBGATE_UID: u32 = 10001;

/// A `hubgate docker-guard` process this test started; stopped by its PID.
struct GuardProcess {
    child: Child,
    log: PathBuf,
}

impl GuardProcess {
    fn start(config: &Path, log: PathBuf, socket: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
            .args(["docker-guard", "--config"])
            .arg(config)
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the guard's socket", Duration::from_secs(10), || {
            socket.exists().then_some(())
        });
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GuardProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A directory only the guard and the probed task share, with the
/// discovery policy's socket in it.
fn guard_dir(root: &Path, service: &str) -> (PathBuf, PathBuf) {
    let dir = root.join("discovery");
    std::fs::create_dir(&dir).unwrap();
    for d in [root, dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = dir.join("docker.sock");
    let config = serde_json::json!({"sockets": [{
        "path": socket,
        "owner": HUBGATE_UID,
        "policy": {"kind": "discovery", "service": service},
    }]});
    let file = root.join("guard.json");
    std::fs::write(&file, config.to_string()).unwrap();
    (dir, file)
}

#[test]
fn discovery_works_through_the_guard_and_nothing_else_does() {
    let root = tempfile::tempdir().unwrap();
    let name = unique("hubgate");
    let (dir, config) = guard_dir(root.path(), &name);
    let guard = GuardProcess::start(
        &config,
        root.path().join("guard.log"),
        &dir.join("docker.sock"),
    );

    // A user server's service: its token in the environment, as
    // SwarmSpawner puts it there.
    let net = Network::create("guard");
    let token = format!("tok-{}", unique("secret"));
    let labels = [
        ("hubgate.enable", "true"),
        ("hubgate.port", "8080"),
        ("hubgate.path", "/guarded"),
    ];
    let env = [
        format!("JUPYTERHUB_API_TOKEN={token}"),
        "JUPYTERHUB_SERVICE_PREFIX=/guarded/".to_owned(),
    ];
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let web = Service::backend(&unique("web"), &net, 1, &labels, &env);

    // hubgate with the guard's directory instead of Docker's socket.
    let mount = format!(
        "type=bind,source={},target=/run/hubgate-guard",
        dir.display()
    );
    let hubgate = Hubgate::start_as(
        &name,
        &net,
        &[],
        &mount,
        Some("unix:///run/hubgate-guard/docker.sock"),
    );
    wait_for(
        "hubgate's discovery to route through the guard",
        Duration::from_secs(60),
        || task_at(hubgate.addr(), "/guarded/x"),
    );
    eprintln!("hubgate's discovery routed /guarded/ through the guard's discovery socket");

    // The probe, from hubgate's position.
    let other = web.containers()[0].clone();
    let probe = workspace_root().join("tests/jupyterhub/guard_probe.py");
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        &format!("{HUBGATE_UID}:{HUBGATE_UID}"),
        "--mount",
        &mount,
        "--mount",
        &format!(
            "type=bind,source={},target=/probe.py,readonly",
            probe.display()
        ),
        "--entrypoint",
        "python3",
        &deploy_images().hub,
        "/probe.py",
        "/run/hubgate-guard/docker.sock",
        "discovery",
        "--secret",
        &token,
        "--other-container",
        &other,
        "--other-service",
        &web.name,
    ]);
    probe_passed(&out);

    // Nothing the probe tried exists; the swarm is as it was.
    for kind in ["container", "volume", "secret", "config", "service"] {
        let mut ls = vec![kind, "ls", "-q", "--filter", "name=hgprobe"];
        if kind == "container" {
            ls.push("--all");
        }
        let made = docker(&ls);
        assert!(made.is_empty(), "the probe made a {kind}: {made}");
    }
    assert_eq!(
        docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        "active"
    );
    let log = guard.log();
    assert!(
        log.contains("docker-guard refused") && log.contains("discovery.paths"),
        "{log}"
    );
}

/// A probe's output ends `N refused, N passed, 0 failed` with 40 or more
/// refused; printed.
fn probe_passed(out: &str) {
    eprintln!("{out}");
    let refused: usize = out
        .lines()
        .last()
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(out.ends_with(" 0 failed"), "{out}");
    assert!(refused >= 40, "only {refused} calls refused:\n{out}");
}

/// Probes deployment `name`'s guard from each guarded task's position, as
/// `apply` made it: hubgate's (its uid, the discovery socket's volume)
/// and the hub's (root, the spawner socket's volume), each with every
/// attack refused and no `secrets` value in any answer. The hub's probe
/// builds its user-server specs from the deployment's own policy.
pub fn probe_deployment(name: &str, secrets: &[String]) {
    let probe = workspace_root().join("tests/jupyterhub/guard_probe.py");
    let probe_mount = format!(
        "type=bind,source={},target=/probe.py,readonly",
        probe.display()
    );
    let hub = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}-hub"),
    ]);
    let hub = hub.lines().next().expect("the hub's container").to_owned();
    let config = docker(&[
        "config",
        "ls",
        "-q",
        "--filter",
        &format!("name={name}-guard-config"),
    ]);
    let policy = docker(&[
        "config",
        "inspect",
        "--format",
        "{{json .Spec.Data}}",
        config.trim(),
    ]);
    // The config's data as base64, which is how its JSON shows bytes.
    let policy = policy.trim_matches('"');
    let hub_secret = format!("{name}-hub-cookie-secret");
    let image = deploy_images().hub;
    let mut args = vec![];
    for s in secrets {
        args.extend(["--secret".to_owned(), s.clone()]);
    }
    for (what, uid, policy_name) in [
        ("discovery", HUBGATE_UID, "discovery"),
        ("spawner", 0, "spawner"),
    ] {
        let dir = format!("/run/hubgate-guard/{what}");
        let volume = format!("type=volume,source={name}-guard-{what},target={dir},readonly");
        let user = format!("{uid}:{uid}");
        let socket = format!("{dir}/docker.sock");
        let mut run = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            &user,
            "--mount",
            &volume,
            "--mount",
            &probe_mount,
            "--entrypoint",
            "python3",
            &image,
            "/probe.py",
            &socket,
            policy_name,
            "--other-container",
            &hub,
            "--other-service",
        ];
        let hubgate = format!("{name}-hubgate");
        run.extend([
            hubgate.as_str(),
            "--policy-b64",
            policy.trim(),
            "--hub-secret",
            &hub_secret,
        ]);
        run.extend(args.iter().map(String::as_str));
        let out = crate::cluster::run(&run);
        let out = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        eprintln!("the guard's {what} socket, probed from its task's position:");
        probe_passed(&out);
    }
}
