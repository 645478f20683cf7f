//! The Docker API cut mid-run: hubgate reaches the engine through a socket
//! relay this test controls; cutting it must leave every route serving and
//! the state reported, and restoring it must resync.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crate::cluster::*;

/// Relays a unix socket to the engine's until cut.
struct Relay {
    path: PathBuf,
    /// Every relayed socket, to break them on a cut.
    open: mpsc::Receiver<UnixStream>,
    listener: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        // hubgate runs as uid 10001 in its container.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (o, open) = mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                            continue;
                        };
                        o.send(client.try_clone().unwrap()).unwrap();
                        o.send(engine.try_clone().unwrap()).unwrap();
                        pipe(client.try_clone().unwrap(), engine.try_clone().unwrap());
                        pipe(engine, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            path: path.to_owned(),
            open,
            listener: Some(thread),
            stop,
        }
    }

    /// Stops accepting and breaks every relayed connection.
    fn cut(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.listener.take() {
            // A drop never panics: the relay thread's own panic was reported.
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        while let Ok(s) = self.open.try_recv() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn state(hubgate: &Hubgate) -> String {
    hubgate.discovery()["sources"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn routes_keep_serving_while_the_docker_api_is_cut_and_resync_on_return() {
    let dir = tempfile::Builder::new()
        .prefix("hubgate-relay")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("docker.sock");
    let mut relay = Relay::start(&socket);
    let net = Network::create("cut");
    let mount = format!("type=bind,source={},target=/relay", dir.path().display());
    let hubgate = Hubgate::start_with(&net, &[], &mount, Some("unix:///relay/docker.sock"));
    wait_for(
        "discovery through the relay",
        Duration::from_secs(30),
        || (state(&hubgate) == "watching").then_some(()),
    );

    let name = unique("steady");
    let _steady = Service::labelled(&name, &net, "/steady");
    wait_for(
        "the service to be routable",
        Duration::from_secs(60),
        || task_at(hubgate.addr(), "/steady/"),
    );

    relay.cut();
    let d = wait_for(
        "the source to report the cut",
        Duration::from_secs(30),
        || {
            let d = hubgate.discovery();
            (d["sources"][0]["state"] == "retrying").then_some(d)
        },
    );
    assert!(
        d["sources"][0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{d}"
    );
    assert!(d["sources"][0]["next_retry_ms"].as_u64().is_some(), "{d}");
    for _ in 0..20 {
        assert!(
            task_at(hubgate.addr(), "/steady/").is_some(),
            "the last known routes keep serving"
        );
    }

    // A service created during the outage appears once the API is back.
    let late = unique("late");
    let _late = Service::labelled(&late, &net, "/late");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(hubgate.addr(), "/late/", &[]).unwrap().status, 404);
    let _relay = Relay::start(&socket);
    wait_for(
        "recovery: the late service routable",
        Duration::from_secs(60),
        || task_at(hubgate.addr(), "/late/"),
    );
    assert_eq!(state(&hubgate), "watching");
    assert!(task_at(hubgate.addr(), "/steady/").is_some());
}
