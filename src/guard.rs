//! `hubgate docker-guard`: reads the guard's configuration, binds its
//! sockets and serves each under its policy until SIGTERM or Ctrl-C; with
//! `--check`, asks each socket for `/_ping` (the task's health check).

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use hubgate_deploy::model::{Role, SecretData};
use hubgate_guard::GuardConfig;

use crate::cli::DockerGuardArgs;

pub(crate) fn run(args: &DockerGuardArgs) -> ExitCode {
    if let Some(file) = &args.print_policy {
        return match print_policy(file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.check {
        return match check(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = crate::logging::filter(
        crate::cli::LogLevel::Info,
        false,
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    if let Ok(filter) = filter {
        crate::logging::init(crate::cli::LogFormat::Text, filter);
    }
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The guard's configuration for deployment file `file`, pretty-printed.
#[allow(clippy::print_stdout)] // the policy is the command's output
fn print_policy(file: &std::path::Path) -> anyhow::Result<()> {
    let (_, desired) = crate::deploy::load(file)?;
    let blob = desired
        .configs
        .iter()
        .find(|c| c.role == Role::GuardConfig)
        .context("the deployment has no guard configuration")?;
    let SecretData::Bytes(bytes) = &blob.data else {
        anyhow::bail!("the guard's configuration is not a value");
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    println!("# {}", blob.name);
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn config(args: &DockerGuardArgs) -> anyhow::Result<GuardConfig> {
    let path = args.config.as_deref().context("--config is needed")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = GuardConfig::parse(&text)
        .with_context(|| format!("{} is not a guard configuration", path.display()))?;
    anyhow::ensure!(!config.sockets.is_empty(), "{}: no sockets", path.display());
    Ok(config)
}

/// Every socket answers `GET /_ping` with 200 within 3 s.
fn check(args: &DockerGuardArgs) -> anyhow::Result<()> {
    for socket in config(args)?.sockets {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket.path)
            .with_context(|| format!("cannot connect to {}", socket.path))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        let _ = stream.take(4096).read_to_end(&mut answer);
        let status = answer.split(|&b| b == b'\r').next().unwrap_or_default();
        anyhow::ensure!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}: /_ping answered {:?}",
            socket.path,
            String::from_utf8_lossy(status)
        );
    }
    Ok(())
}

fn serve(args: &DockerGuardArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut servers = vec![];
        for socket in config.sockets {
            let path = std::path::PathBuf::from(&socket.path);
            let listener = hubgate_guard::bind(&path, socket.owner)?;
            tracing::info!(
                socket = %path.display(),
                policy = socket.policy.name(),
                owner = socket.owner,
                "docker-guard serving"
            );
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            servers.push(tokio::spawn(hubgate_guard::serve(
                listener,
                args.upstream.clone(),
                socket.policy,
                shutdown,
            )));
        }
        crate::serve::wait_for_signal().await?;
        let _ = stop.send(true);
        for server in servers {
            let _ = server.await;
        }
        anyhow::Ok(())
    })
}
