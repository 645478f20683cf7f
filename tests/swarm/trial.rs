//! `scripts/trial` as a newcomer runs it: each phase said, a password that
//! keeps others out (the port is published on every interface), and a
//! `destroy --purge --yes` that needs no terminal. Its own name, port and
//! state directory, so a trial deployed on the machine is left alone.

use std::process::{Command, Output, Stdio};

use crate::cluster::{free_port, unique, workspace_root};
use crate::deployment::{User, output_text};

fn trial(args: &[&str], env: &[(&str, String)]) -> (Output, String) {
    let mut cmd = Command::new(workspace_root().join("scripts/trial"));
    cmd.args(args).stdin(Stdio::null());
    // The trial builds hubgate with cargo. The variables `cargo test` sets
    // for this process (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...) would mark
    // that build dirty (seen with cargo's fingerprint log) and relink the
    // optimised binary for minutes: the trial runs as a newcomer's would.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO") && k != "CARGO_HOME" {
            cmd.env_remove(&*k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = output_text(&out);
    eprint!("{text}");
    (out, text)
}

#[test]
fn the_trial_says_each_phase_wants_its_password_and_goes_without_a_terminal() {
    let name = unique("trial").replace('-', "");
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("trial.toml");
    let env = [
        ("TRIAL_NAME", name.clone()),
        ("TRIAL_PORT", port.to_string()),
        ("TRIAL_STATE", state.path().display().to_string()),
        ("TRIAL_FILE", file.display().to_string()),
    ];
    // Whatever happens below, the trial goes.
    struct Cleanup<'a>(&'a [(&'a str, String)]);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            trial(&["destroy", "--purge", "--yes"], self.0);
        }
    }
    let _cleanup = Cleanup(&env);

    let (out, text) = trial(&[], &env);
    assert!(out.status.success(), "scripts/trial failed");
    for phase in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(
            text.contains(&format!("trial: {phase}")),
            "{phase} not said"
        );
    }
    let password = std::fs::read_to_string(state.path().join("password")).unwrap();
    let password = password.trim();
    assert!(password.len() >= 16, "a weak password: {password:?}");
    assert!(text.contains(&format!("the password {password}")), "{text}");

    let user = User::new("newcomer", vec![format!("http://127.0.0.1:{port}")]);
    user.step("refused", &["--password", "any"]);
    user.step("login", &["--password", password]);

    // Again: nothing to do; status reads what is there.
    let (out, text) = trial(&[], &env);
    assert!(
        out.status.success() && text.contains("No changes"),
        "{text}"
    );
    let (out, text) = trial(&["status"], &env);
    assert!(
        out.status.success() && text.contains(&format!("{name}-hub")),
        "{text}"
    );

    // No terminal: --yes removes it, --purge its volumes too.
    let (out, text) = trial(&["destroy", "--purge", "--yes"], &env);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("removed service {name}-hub")),
        "{text}"
    );
    assert!(!text.contains("[1/5]"), "destroy built something: {text}");
    let (out, text) = trial(&["destroy", "--purge", "--yes"], &env);
    assert!(
        out.status.success() && text.contains("Nothing to remove"),
        "{text}"
    );
}
