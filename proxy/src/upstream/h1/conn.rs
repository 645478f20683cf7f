//! An upstream keep-alive connection and this thread's pool of idle ones.

use std::cell::RefCell;
use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::head::Field;
use crate::upstream::idle::{self, Idle, Pool, PoolKey, SHED_AFTER, park, unpark};

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
    /// It sat idle [`SHED_AFTER`] or more before this exchange, so it is
    /// expected to idle as long again and gives up its buffers when it
    /// goes back. A JupyterLab tab polls its server's REST API every few
    /// seconds over one connection: between the pool's sweeps it kept its
    /// 4 KiB read and 1 KiB write buffer most of the time (5 of the
    /// proxy's 16.7 MiB at 1,000 users, the largest share of a heap profile).
    pub(super) shed_on_return: bool,
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
        shed(c);
        open(c)
    })
}

/// Puts a connection whose exchange is complete back into the pool,
/// without its buffers if it is one that idles long (see [`SHED_AFTER`]).
pub(super) fn put_back(mut conn: Box<Conn>) {
    if conn.shed_on_return {
        shed(&mut conn);
    }
    park(&IDLE, conn, |conn| &conn.key);
}

/// An idle connection the upstream has not closed (nor written to) meanwhile.
pub(super) fn take_idle(connector: u64, upstream: &str) -> Option<Box<Conn>> {
    // The runtime has already recorded a FIN or stray bytes as readiness,
    // so this costs no system call on a healthy socket.
    let (mut conn, idle) = unpark(&IDLE, connector, upstream, |c| open(c))?;
    conn.shed_on_return = idle >= SHED_AFTER;
    Some(conn)
}

/// Gives up the connection's buffers; its next exchange makes room anew.
fn shed(conn: &mut Conn) {
    conn.buf = BytesMut::new();
    conn.out = Vec::new();
    conn.fields = Vec::new();
}

/// Neither closed nor written to by the upstream while idle.
fn open(conn: &Conn) -> bool {
    matches!(conn.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a fresh listener, in the pool's terms, with a
    /// read buffer of `read` bytes and a 1 KiB write buffer.
    async fn connected(read: usize) -> (Box<Conn>, String, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let io = TcpStream::connect(addr).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::with_capacity(read);
        buf.extend_from_slice(b"the last body");
        let _ = buf.split(); // sent on; the allocation stays with `buf`
        let conn = Box::new(Conn {
            io,
            buf,
            out: Vec::with_capacity(1024),
            fields: Vec::new(),
            key: (u64::MAX, addr.to_string().into()),
            shed_on_return: false,
        });
        (conn, addr.to_string(), peer)
    }

    fn buffers(conn: &Conn) -> (usize, usize) {
        (conn.buf.capacity(), conn.out.capacity())
    }

    /// A swept idle connection keeps no buffers (before the fix each kept
    /// the 16 KiB or more its last body was read into).
    #[tokio::test]
    async fn a_swept_connection_keeps_no_buffers() {
        let (conn, addr, _peer) = connected(64 * 1024).await;
        put_back(conn);
        drop(sweep(std::time::Instant::now()));
        let conn = take_idle(u64::MAX, &addr).expect("parked");
        assert_eq!(buffers(&conn), (0, 0));
    }

    /// A connection that sat idle past `SHED_AFTER` before its exchange
    /// goes back without its buffers (a REST poll every few seconds kept
    /// them between sweeps before the fix); one reused at once keeps them.
    #[tokio::test]
    async fn a_connection_that_idles_long_goes_back_without_buffers() {
        let (conn, addr, _peer) = connected(4 * 1024).await;
        put_back(conn);
        let mut conn = take_idle(u64::MAX, &addr).expect("parked");
        assert!(!conn.shed_on_return, "reused at once");
        put_back(conn);
        std::thread::sleep(SHED_AFTER);
        conn = take_idle(u64::MAX, &addr).expect("parked");
        assert_ne!(buffers(&conn), (0, 0), "kept while parked");
        put_back(conn);
        let conn = take_idle(u64::MAX, &addr).expect("parked");
        assert_eq!(buffers(&conn), (0, 0), "idle long, then back");
        assert!(!conn.shed_on_return, "busy again: keeps what it makes");
    }
}
