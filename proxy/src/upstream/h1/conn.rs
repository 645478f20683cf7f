//! An upstream keep-alive connection and this thread's pool of idle ones.

use std::cell::RefCell;
use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::head::Field;
use crate::upstream::idle::{self, Idle, Pool, PoolKey, park, unpark};

/// An upstream keep-alive connection, the bytes read ahead on it, and the
/// buffer its request heads are encoded into (kept, so a pooled connection
/// encodes without allocating).
pub(crate) struct Conn {
    pub(super) io: TcpStream,
    pub(super) buf: BytesMut,
    pub(super) out: Vec<u8>,
    /// Where the fields of the last response head are in `buf`.
    pub(super) fields: Vec<Field>,
    /// Where it goes back when idle (cloned once per connection).
    pub(super) key: PoolKey,
}

thread_local! {
    static IDLE: Idle<Box<Conn>> = RefCell::new(Pool::new());
}

/// Sweeps this thread's pool of inline-exchange connections.
pub(crate) fn sweep(now: std::time::Instant) {
    idle::sweep(&IDLE, now, |c| open(c));
}

/// Puts a connection whose exchange is complete back into the pool.
pub(super) fn put_back(conn: Box<Conn>) {
    park(&IDLE, conn, |conn| &conn.key);
}

/// An idle connection the upstream has not closed (nor written to) meanwhile.
pub(super) fn take_idle(connector: u64, upstream: &str) -> Option<Box<Conn>> {
    // The runtime has already recorded a FIN or stray bytes as readiness,
    // so this costs no system call on a healthy socket.
    unpark(&IDLE, connector, upstream, |c| open(c))
}

/// Neither closed nor written to by the upstream while idle.
fn open(conn: &Conn) -> bool {
    matches!(conn.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
