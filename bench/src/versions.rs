//! The programs a report compares, and their versions.

use std::path::Path;
use std::process::Command;

use crate::targets::NODE_PATH;

/// `name version` lines for the report.
pub(crate) fn versions(hubgate: &Path) -> Vec<(String, String)> {
    let run = |cmd: &str, args: &[&str]| -> String {
        Command::new(cmd)
            .args(args)
            .env("NODE_PATH", NODE_PATH)
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_else(|_| "not installed".into())
    };
    vec![
        (
            "hubgate".into(),
            run(&hubgate.display().to_string(), &["--version"]),
        ),
        ("nginx".into(), run("nginx", &["-v"])),
        ("haproxy".into(), run("haproxy", &["-v"])),
        ("caddy".into(), run("caddy", &["version"])),
        (
            "configurable-http-proxy".into(),
            run("configurable-http-proxy", &["--version"]),
        ),
        ("wrk".into(), run("wrk", &["-v"])),
        ("h2load".into(), run("h2load", &["--version"])),
    ]
}
