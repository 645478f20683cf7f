//! Socket options and hygiene shared by upstream connections and tunnels.

use std::task::Context;
use std::time::Duration;

use tokio::net::TcpStream;

/// Turns on TCP keepalive probes after `idle` without traffic, so that no
/// IPVS, conntrack or firewall idle timer (Docker's IPVS forgets a
/// connection after 900 s) silently kills an idle websocket.
pub(crate) fn keepalive(s: &TcpStream, idle: Duration) -> std::io::Result<()> {
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(idle.as_secs().clamp(1, 30)))
        .with_retries(4);
    socket2::SockRef::from(s).set_tcp_keepalive(&ka)
}

/// The sockets come from hyper's finished connection tasks, whose wakers
/// may still sit in the sockets' readiness slots. A stored waker keeps its
/// task's whole allocation (the connection future, several KiB) alive until
/// the socket next becomes ready, which for an idle websocket can be hours:
/// swap them for no-op wakers. The tunnel's pump registers its own as it waits; a
/// pooled upstream connection registers anew when it is next used.
pub(crate) fn forget_wakers(s: &TcpStream) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let _ = s.poll_read_ready(&mut cx);
    let _ = s.poll_write_ready(&mut cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_is_set_and_reads_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        keepalive(&s, Duration::from_secs(45)).unwrap();
        let sock = socket2::SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(45));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(30)
        );
    }
}
