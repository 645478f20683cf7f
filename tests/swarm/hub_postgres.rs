//! The hub's database on PostgreSQL (Debian's server, run on the host's
//! end of the nodes' bridge by `tests/jupyterhub/postgres.py`) on the
//! five-node swarm: JupyterHub and its lease keep their state there, the
//! password sits only in a Docker secret, and the hub fails over with its
//! manager's daemon stopped, as a follower and as the Raft leader.

use std::time::Instant;

use crate::cluster::{free_port, workspace_root};
use crate::deployment::{Deployment, User};
use crate::hub_failover::{Raft, Scene, manager_stopped};
use crate::multinode_checks::{LogsOnPanic, multinode_file};
use crate::nodes::Cluster;

/// A PostgreSQL server this test started; stopped (by its PID) on drop.
struct Postgres {
    dir: String,
    url: String,
    password_file: String,
}

impl Postgres {
    fn start(host: &str) -> Self {
        let out = std::process::Command::new("python3")
            .arg(workspace_root().join("tests/jupyterhub/postgres.py"))
            .args(["start", "--host", host, "--port", &free_port().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let text = |key: &str| said[key].as_str().unwrap().to_owned();
        Self {
            dir: text("dir"),
            url: text("url"),
            password_file: text("password_file"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("python3")
            .arg(workspace_root().join("tests/jupyterhub/postgres.py"))
            .args(["stop", &self.dir])
            .status();
    }
}

/// Deploys `multipg` with `hub.database` on a PostgreSQL server of its
/// own, gives a user a running server on a worker, then loses the hub's
/// manager twice. Every node of `cluster` must be up, with the images.
pub(crate) fn failovers_on_postgresql(cluster: &Cluster) {
    let pg = Postgres::start(&cluster.host_ip());
    let name = "multipg";
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let text = multinode_file(cluster, name, port, storage.path()).replace(
        "extra_config = '''",
        &format!(
            "database = {{ url = \"{}\", password_file = \"{}\" }}\nextra_config = '''",
            pg.url, pg.password_file
        ),
    );
    let mut d = Deployment::new(name, &text);
    d.docker_host = Some(cluster.nodes[0].host.clone());
    // Dropped before `d`: a failure's logs are taken before the cleanup
    // destroys the deployment they are about.
    let _logs = LogsOnPanic(cluster);
    let probe = format!("{}:{port}", cluster.nodes[0].ip);
    let applied = Instant::now();
    d.ok(&["apply", "--timeout", "120", "--probe", &probe, "FILE"]);
    eprintln!(
        "apply with the hub's database on PostgreSQL ({}): ready in {:.1} s",
        pg.url,
        applied.elapsed().as_secs_f64()
    );

    // The password is in a secret only: not in the hub's spec.
    let password = std::fs::read_to_string(&pg.password_file).unwrap();
    let spec = cluster.nodes[0].docker(&["service", "inspect", &format!("{name}-hub")]);
    assert!(
        spec.contains(&pg.url) && spec.contains("--password-file"),
        "{spec}"
    );
    assert!(
        !spec.contains(password.trim()),
        "the password is in the spec"
    );

    let user = User::new("umpg", cluster.publics(3, port));
    user.step("login", &[]);
    user.step("spawn", &[]);
    user.step("kernel", &[]);
    user.step("routed", &[]);
    // The hub's state is in PostgreSQL, none on the storage.
    let on_storage = storage.path().join(".hubgate/hub");
    let files: Vec<_> = std::fs::read_dir(&on_storage)
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "hub state on the storage: {files:?}");
    let status = d.ok(&["status", "FILE"]);
    eprintln!("{status}");
    assert!(
        status.contains("hub database: PostgreSQL") && status.contains("hub lease: held by"),
        "{status}"
    );

    let scene = Scene {
        cluster,
        name,
        port,
        storage: storage.path(),
        user: &user,
        managers: [0, 1, 2],
    };
    manager_stopped(&scene, Raft::Follower);
    manager_stopped(&scene, Raft::Leader);
    user.step("stop", &[]);
    d.ok(&["destroy", "--yes", "--purge", "FILE"]);
}
