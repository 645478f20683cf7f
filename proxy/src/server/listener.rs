//! Bound listening sockets (TCP or unix) and what one accept yields.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use tokio::net::{TcpListener, UnixListener};

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket (`--socket`, `--api-socket`).
    Unix(UnixListener),
}

impl Listener {
    /// Binds a TCP listener.
    pub async fn bind_tcp(addr: SocketAddr) -> io::Result<Self> {
        TcpListener::bind(addr).await.map(Self::Tcp)
    }

    /// Adopts a bound std listener (e.g. one of several `SO_REUSEPORT`
    /// sockets, one per worker). Must be called inside a runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener).map(Self::Tcp)
    }

    /// Adopts a bound std unix listener. Must be called inside a runtime.
    pub fn from_std_unix(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener).map(Self::Unix)
    }

    /// Binds a unix socket at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &Path) -> io::Result<Self> {
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(path)?;
        }
        UnixListener::bind(path).map(Self::Unix)
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

/// An accepted connection's socket.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Accepts one connection, with the client's address (none on a unix socket).
pub(super) async fn accept_one(listener: &Listener) -> io::Result<(Accepted, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Accepted::Tcp(s), Some(peer.ip())))
        }
        Listener::Unix(l) => Ok((Accepted::Unix(l.accept().await?.0), None)),
    }
}

/// A plain-HTTP client over its per-address limit gets a 503, written if
/// the socket takes it at once (a TLS one is only closed: a 503 would need
/// the handshake the limit is there to spare).
pub(super) fn refuse(io: Accepted) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";
    if let Accepted::Tcp(s) = io {
        let _ = s.try_write(BUSY);
    }
}
