//! `hubgate deploy block-metadata`: this node's swarm containers kept from
//! the cloud's metadata service. It loads the ruleset
//! (`hubgate_deploy::metadata`) with `nft -j -f -`, checks every
//! [`RECHECK`] that the table is still there (a firewall reload may drop
//! it) and loads it again if not, and removes the table on SIGTERM or
//! SIGINT, so a deployment without the block leaves no rule behind. It
//! needs root and `CAP_NET_ADMIN` in the node's network namespace: the
//! service runs on the host network with that capability added, and it
//! alone of the deployment's services has it. `hubgate deploy anchor`
//! (`hold`) lives here too: the other node-level task, one that only
//! holds the node's place on the servers' network.
#![allow(clippy::print_stdout)] // what it blocks is the service's log

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hubgate_deploy::metadata::ruleset;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::BlockArgs;

/// How often the table is looked for.
const RECHECK: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: &BlockArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return Ok(if table_present(&args.table)? {
            ExitCode::SUCCESS
        } else {
            eprintln!("the nftables table inet {} is missing", args.table);
            ExitCode::FAILURE
        });
    }
    let rules = ruleset(&args.table, &args.interface, &args.address);
    load(&rules)?;
    println!(
        "refusing what containers send through {} to {} (nftables table inet {})",
        args.interface,
        args.address.join(", "),
        args.table
    );
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = tokio::time::sleep(RECHECK) => {
                if !table_present(&args.table)? {
                    println!("the table inet {} was gone: loading it again", args.table);
                    load(&rules)?;
                }
            }
        }
    }
    nft(&["delete", "table", "inet", &args.table], None)?;
    println!("removed the table inet {}", args.table);
    Ok(ExitCode::SUCCESS)
}

/// `hubgate deploy anchor`: nothing but a task on the network, until
/// SIGTERM or SIGINT.
pub(crate) async fn hold() -> anyhow::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads `rules` (nft's JSON) in one transaction.
fn load(rules: &serde_json::Value) -> anyhow::Result<()> {
    nft(&["-j", "-f", "-"], Some(rules.to_string().as_bytes()))
}

fn table_present(table: &str) -> anyhow::Result<bool> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run nft")?;
    Ok(out.success())
}

/// Runs `nft args`, `input` on its standard input; fails with its message.
fn nft(args: &[&str], input: Option<&[u8]>) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.unwrap_or_default())
            .context("cannot write to nft")?;
    }
    let out = child.wait_with_output().context("nft did not end")?;
    if !out.status.success() {
        bail!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
