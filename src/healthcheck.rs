//! `hubgate healthcheck`: the image's `HEALTHCHECK` (the final image has no
//! shell and no curl). Asks the proxy for `/_chp_healthz` over loopback.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::HealthcheckArgs;

pub(crate) fn run(args: &HealthcheckArgs) -> ExitCode {
    match check(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &HealthcheckArgs) -> std::io::Result<()> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut s = TcpStream::connect_timeout(&args.addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET /_chp_healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    if line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "answer: {:?}",
            line.lines().next().unwrap_or("")
        )))
    }
}
