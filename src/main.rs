//! The `hubgate` binary: flags, files and the environment in; the proxy
//! library crates do the work. Invoked as `configurable-http-proxy` (a
//! symlink), it behaves as `hubgate serve` and takes CHP's flags.

mod acme;
mod api;
mod block_metadata;
mod cli;
mod deploy;
mod discover;
mod docker_host;
mod guard;
mod healthcheck;
mod http_get;
mod input;
mod logging;
mod routes_file;
mod serve;
mod tls_flags;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{ChpCli, Cli, Command};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_huge_pages();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    let parsed = if invoked_as == Some("configurable-http-proxy") {
        ChpCli::try_parse_from(&argv).map(|c| Command::Serve(Box::new(c.serve)))
    } else {
        Cli::try_parse_from(&argv).map(|c| c.command)
    };
    let command = match parsed {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Healthcheck(args) => healthcheck::run(&args),
        Command::Api(args) => api::run(&args),
        Command::DockerGuard(args) => guard::run(&args),
        Command::Deploy(args) => deploy::run(args.command),
        Command::Serve(args) => {
            if let Err(e) = serve::validate(&args) {
                eprintln!("error: {}", e.0);
                return ExitCode::from(2);
            }
            match serve::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Turns transparent huge pages off for this process, before the proxy
/// allocates anything of its own. With them, the allocator's memory is
/// faulted in 2 MiB at a time and a page stays whole while any of its
/// connections' buffers live: at 1,000 JupyterLab users through one worker
/// the process held 47-61 MiB against 31.5 MiB without them, at the same
/// CPU (bench/README.md, scenario 10). The allocator is built not to ask for
/// them (`no_thp`); this covers kernels that give them unasked
/// (`transparent_hugepage=always`). A kernel without the call is no error.
fn no_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
