//! How a listener serves its connections: TLS, keepalive and the limits
//! one client may hold.

use std::sync::Arc;
use std::time::Duration;

/// How a listener serves connections.
#[derive(Clone, Default)]
pub struct ServeConfig {
    /// TLS for every connection (ALPN `h2` and `http/1.1`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Timeouts and sizes; see [`Limits`].
    pub limits: Limits,
    /// TCP keepalive idle time on accepted TLS connections (plain ones get
    /// it when they become a websocket tunnel).
    pub tcp_keepalive: Option<Duration>,
}

/// What one client may hold, with nginx's equivalent in brackets.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A connection that has not sent a whole request head this long after
    /// it opened or after its last request ended, is closed
    /// (`client_header_timeout`, 60 s).
    pub header_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (`keepalive_timeout`; `--keep-alive-timeout`, 5 s as CHP).
    pub keep_alive: Duration,
    /// A connection whose socket carries no bytes either way for this long
    /// is closed, requests in flight included (CHP's `--timeout`; none).
    pub socket_timeout: Option<Duration>,
    /// Largest request head; more is a 431 (`large_client_header_buffers`
    /// 4 × 8 KiB; here 64 KiB).
    pub max_head: usize,
    /// Most header fields in a head; more is a 431 (nginx: no count).
    pub max_fields: usize,
    /// Longest request target; longer is a 414 (8 KiB, as nginx's buffer).
    pub max_request_line: usize,
    /// Open connections per listener (per worker); beyond it new ones wait
    /// in the kernel's backlog (`worker_connections`, 512).
    pub max_connections: usize,
    /// Open connections per client address per listener; beyond it a new
    /// one gets a 503 and is closed (`limit_conn`; none by default).
    pub max_per_client: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(5),
            socket_timeout: None,
            max_head: 64 * 1024,
            max_fields: 100,
            max_request_line: 8 * 1024,
            max_connections: 16_384,
            max_per_client: None,
        }
    }
}
