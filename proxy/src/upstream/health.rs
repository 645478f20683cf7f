//! Active health checks: `GET <path>` on every endpoint of each balanced
//! route that asks for it, on the route's own interval. A failing endpoint
//! leaves the rotation until a check passes again; passive health (refused
//! connections, see `balance`) works without any of this.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::balance::{Backend, Balancer, HealthCheck};
use super::pool::Connector;
use super::target::Endpoint;
use crate::clock::now_ms;

/// How often the checker looks for checks that are due.
const TICK: Duration = Duration::from_millis(500);

/// Runs until `shutdown`: every tick, probes the endpoints whose check is due
/// among the balancers `current` returns (the live route table's).
pub(crate) async fn run(
    current: impl Fn() -> Vec<Arc<Balancer>>,
    connector: Connector,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        for balancer in current() {
            let Some(check) = balancer.health_check() else {
                continue;
            };
            for backend in balancer.backends() {
                if backend.next_check.load(Ordering::Relaxed) > now {
                    continue;
                }
                let interval = u64::try_from(check.interval.as_millis()).unwrap_or(u64::MAX);
                backend
                    .next_check
                    .store(now.saturating_add(interval), Ordering::Relaxed);
                let (backend, check, connector) =
                    (backend.clone(), check.clone(), connector.clone());
                tokio::spawn(async move {
                    let ok = probe(&connector, &backend, &check).await;
                    backend.set_healthy(ok);
                });
            }
        }
    }
}

/// One check: true when the endpoint answers 2xx or 3xx in time.
pub(crate) async fn probe(connector: &Connector, backend: &Backend, check: &HealthCheck) -> bool {
    if !matches!(backend.target.endpoint, Endpoint::Tcp { .. }) {
        // Only plain-HTTP endpoints are checked; others stay in rotation.
        return true;
    }
    let attempt = async {
        let mut io = connector.connect_tcp(&backend.target).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hubgate-health\r\nConnection: close\r\n\r\n",
            check.path, backend.target.authority
        );
        io.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(256);
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            if io.read_buf(&mut buf).await.ok()? == 0 {
                break;
            }
        }
        status_code(&buf)
    };
    matches!(
        tokio::time::timeout(check.timeout, attempt).await,
        Ok(Some(200..=399))
    )
}

/// The status code of a response head (httparse, as the inline exchange).
fn status_code(head: &[u8]) -> Option<u16> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut fields);
    match res.parse(head) {
        Ok(_) => res.code,
        // The head may go on past what was read; the status line is in.
        Err(httparse::Error::TooManyHeaders) => res.code,
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 503 x\r\n\r\n"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-x\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
