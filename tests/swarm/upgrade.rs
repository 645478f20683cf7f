//! An existing deployment, made by the hubgate that kept the hub's database
//! on a node-local volume (built from the commit before the move), upgraded
//! by today's `apply`: `plan` names the move, and the user, her token, her
//! browser session and her running server survive it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::{free_port, workspace_root};
use crate::deployment::{Deployment, User, local_file, output_text};

/// The last commit whose hub kept its database on the volume
/// `<name>-hub-data` of its node.
const BEFORE_THE_MOVE: &str = "66cccab";

/// Builds that commit's `hubgate` (a worktree and a target directory of
/// its own under `target/`, kept between runs): its path.
fn earlier_hubgate() -> PathBuf {
    let root = workspace_root();
    let tree = root.join("target/earlier-hubgate/src");
    if !tree.join("Cargo.toml").exists() {
        let _ = std::fs::remove_dir_all(&tree);
        let out = Command::new("git")
            .current_dir(root)
            .args(["worktree", "add", "--force", "--detach"])
            .arg(&tree)
            .arg(BEFORE_THE_MOVE)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git worktree add {BEFORE_THE_MOVE} (needs the repository's history): {}",
            output_text(&out)
        );
    }
    let mut build = Command::new("cargo");
    build
        .current_dir(&tree)
        .args(["build", "--quiet", "-p", "hubgate", "--bin", "hubgate"]);
    // The variables `cargo test` sets would mark the build dirty (and a
    // CARGO_TARGET_DIR of the caller's would put the binary elsewhere).
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO") && k != "CARGO_HOME" {
            build.env_remove(&*k);
        }
    }
    build.env(
        "CARGO_TARGET_DIR",
        root.join("target/earlier-hubgate/target"),
    );
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "building {BEFORE_THE_MOVE}: {}",
        output_text(&out)
    );
    root.join("target/earlier-hubgate/target/debug/hubgate")
}

/// `hubgate deploy ARGS FILE` with the binary at `bin`.
fn deploy_with(bin: &Path, d: &Deployment, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("deploy")
        .args(args)
        .arg(&d.file)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{}: {text}", args.join(" "));
    text
}

/// The task of `service` the swarm wants running.
fn running_task(service: &str) -> String {
    crate::cluster::docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ])
}

#[test]
fn a_deployment_of_the_earlier_layout_moves_its_hub_database_and_keeps_its_users() {
    let bin = earlier_hubgate();
    let storage = tempfile::tempdir().unwrap();
    let port = free_port();
    let name = crate::cluster::unique("upgrade").replace('-', "");
    let text = local_file(&name, port, storage.path(), "").replace(
        "kind = \"dummy\"",
        "kind = \"dummy\"\nadmin_users = [\"upadmin\"]",
    );
    let d = Deployment::new(&name, &text);
    deploy_with(&bin, &d, &["apply", "--timeout", "180"]);
    let public = format!("http://127.0.0.1:{port}");
    let alice = User::new("upalice", vec![public.clone()]);
    alice.step("login", &[]);
    alice.step("spawn", &[]);
    alice.step("write", &[]);
    let server = format!("jupyter-{}", alice.name);
    let task = running_task(&server);
    let volume = format!("{name}-hub-data");
    assert!(
        crate::cluster::docker(&["volume", "ls", "-q"])
            .lines()
            .any(|v| v == volume),
        "the earlier hubgate made no {volume}"
    );

    let plan = d.plan();
    eprintln!("{plan}");
    assert!(
        plan.contains(&format!(
            "> move the hub's database from the volume {volume}"
        )) && plan.contains(&format!("into the secret {name}-hub-cookie-secret"))
            && plan.contains(&format!("-/+ service {name}-hub")),
        "{plan}"
    );
    let applied = d.ok(&["apply", "--timeout", "180", "FILE"]);
    assert!(applied.contains("moved the hub's database"), "{applied}");
    assert!(
        storage
            .path()
            .join(".hubgate/hub/jupyterhub.sqlite")
            .exists(),
        "no database on the storage"
    );

    // Her old session and token work; her server is the same task; she
    // reads what she wrote; the admin lists her.
    alice.step("known", &[]);
    alice.step("read", &[]);
    let now = running_task(&server);
    assert_eq!(now, task, "the server was started anew");
    let admin = User::new("upadmin", vec![public]);
    admin.step("login", &[]);
    admin.step("admin", &["--expect-user", &alice.name]);
    let plan = d.plan();
    assert!(
        plan.contains("No changes"),
        "a second apply would change things:\n{plan}"
    );
    eprintln!("the earlier layout upgraded: database moved, session, token and server kept");
    alice.step("stop", &[]);
}
