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

/// Sweeps this thread's pool of inline-exchange connections. Those kept
/// give up their buffers: the read buffer still holds the allocation the
/// last body was read into (16 KiB or more), and a pool holds thousands of
/// connections while each user's browser leaves several behind after its
/// login burst. A connection reused within a sweep (every few seconds)
/// keeps them, so a busy one never allocates; the next exchange on a swept
/// one makes room anew. Returns the connections that go (closed or idle
/// too long), for the sweeper to close a few at a time.
#[allow(clippy::vec_box)] // the pool keeps them boxed: parking moves a pointer
pub(crate) fn sweep(now: std::time::Instant) -> Vec<Box<Conn>> {
    idle::sweep(&IDLE, now, |c| {
        c.buf = BytesMut::new();
        c.out = Vec::new();
        c.fields = Vec::new();
        open(c)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A swept idle connection keeps no buffers (before the fix each kept
    /// the 16 KiB or more its last body was read into).
    #[tokio::test]
    async fn a_swept_connection_keeps_no_buffers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let io = TcpStream::connect(addr).await.unwrap();
        let _peer = listener.accept().await.unwrap();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(b"the last body");
        let _ = buf.split(); // sent on; the allocation stays with `buf`
        let key: PoolKey = (u64::MAX, addr.to_string().into());
        put_back(Box::new(Conn {
            io,
            buf,
            out: Vec::with_capacity(1024),
            fields: Vec::new(),
            key,
        }));
        drop(sweep(std::time::Instant::now()));
        let conn = take_idle(u64::MAX, &addr.to_string()).expect("parked");
        assert_eq!((conn.buf.capacity(), conn.out.capacity()), (0, 0));
    }
}
