//! `hubgate api PATH`: one authenticated GET of the local proxy's REST API,
//! the answer on stdout. The image has no shell or curl; `hubgate deploy
//! status` runs this inside each hubgate container.
#![allow(clippy::print_stdout)] // the answer is the command's output

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ApiArgs;

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
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&args.addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: token {t}\r\n"));
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n",
        args.path
    )?;
    s.flush()?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(status.contains(" 200 "), "{}: {status}", args.path);
    // The API answers with a length; chunked bodies are not used here.
    Ok(body.to_owned())
}
