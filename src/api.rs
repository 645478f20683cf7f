//! `hubgate api PATH`: one authenticated GET of the local proxy's REST API,
//! the answer on stdout. The image has no shell or curl; `hubgate deploy
//! status` runs this inside each hubgate container.
#![allow(clippy::print_stdout)] // the answer is the command's output

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ApiArgs;
use crate::http_get;

pub(crate) fn run(args: &ApiArgs) -> ExitCode {
    match get(args) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn get(args: &ApiArgs) -> anyhow::Result<String> {
    let token = crate::serve::auth_token(args.token.clone(), args.token_file.clone())?;
    anyhow::ensure!(
        args.path.starts_with('/') && !args.path.contains(char::is_whitespace),
        "{:?} is not an API path",
        args.path
    );
    let answer = http_get::get(
        args.addr,
        &args.path,
        token.as_deref(),
        Duration::from_secs(5),
    )?;
    anyhow::ensure!(answer.status == 200, "{}: {}", args.path, answer.status);
    Ok(answer.body)
}
