//! `hubgate healthcheck`: the image's `HEALTHCHECK` (the final image has no
//! shell and no curl). Asks the proxy for `/_chp_healthz` over loopback.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::HealthcheckArgs;
use crate::http_get;

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
    let answer = http_get::get(args.addr, "/_chp_healthz", None, timeout)?;
    if answer.status == 200 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answer: {}", answer.status)))
    }
}
