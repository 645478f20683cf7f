//! The example stack file deploys hubgate as the seed deployment ran nginx:
//! on the manager, host-mode ports, the socket read-only, unprivileged in
//! the socket's group, discovering the services of the hub's network.

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use crate::cluster::*;

/// A deployed stack, removed on drop.
struct Stack {
    name: String,
    secret: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker_ok(&["stack", "rm", &self.name]);
        let filter = format!("label=com.docker.stack.namespace={}", self.name);
        // Bounded, and never a panic in a drop (the engine may be gone).
        let start = std::time::Instant::now();
        while !run(&["ps", "-q", "--filter", &filter]).stdout.is_empty()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = docker_ok(&["secret", "rm", &self.secret]);
    }
}

#[test]
fn the_example_stack_file_runs_hubgate_on_the_manager() {
    let net = Network::create("stack");
    let secret = unique("token");
    let out = std::process::Command::new("docker")
        .args(["secret", "create", &secret, "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(TOKEN.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    let (port, tls_port) = (free_port(), free_port());
    let gid = std::fs::metadata("/var/run/docker.sock")
        .unwrap()
        .gid()
        .to_string();
    let name = unique("stack");
    let file = workspace_root().join("examples/stack.yml");
    let deployed = std::process::Command::new("docker")
        .args(["stack", "deploy", "--compose-file"])
        .arg(&file)
        .arg(&name)
        .env("HUBGATE_IMAGE", &images().hubgate)
        .env("DOCKER_GID", &gid)
        .env("HUBGATE_HTTP_PORT", port.to_string())
        .env("HUBGATE_HTTPS_PORT", tls_port.to_string())
        .env("HUBGATE_NETWORK", &net.name)
        .env("HUBGATE_TOKEN_SECRET", &secret)
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let _stack = Stack {
        name: name.clone(),
        secret,
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(
        "the stack's hubgate to answer",
        Duration::from_secs(60),
        || (http_get(addr, "/_chp_healthz", &[]).ok()?.status == 200).then_some(()),
    );
    let filter = format!("label=com.docker.swarm.service.name={name}_hubgate");
    let container = docker(&["ps", "-q", "--filter", &filter]);
    assert_eq!(
        docker(&["inspect", "--format", "{{.Config.User}}", &container]),
        format!("10001:{gid}")
    );

    let web = unique("stackweb");
    let _web = Service::labelled(&web, &net, "/web");
    wait_for(
        "a labelled service behind the stack's hubgate",
        Duration::from_secs(60),
        || task_at(addr, "/web/"),
    );
}
