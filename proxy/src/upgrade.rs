//! Websocket (and any HTTP/1.1 upgrade) tunnels: once both sides have
//! switched protocols, bytes are copied both ways, never parsed as frames.
//! A tunnel holds no reference to the route table, so route changes and
//! removals never close it; it ends when either side closes or at forced
//! shutdown. Client-to-upstream bytes count as route activity, as in CHP.
//!
//! Idle tunnels should cost almost nothing. When both sides are plain TCP
//! (the common case behind a TLS-terminating edge or on a swarm overlay),
//! the client socket is taken back from hyper, the upstream socket comes
//! straight from the inline exchange (`h1`), and [`Pump`] copies, holding
//! no buffer while waiting: it waits for readability, then reads into the
//! worker thread's one scratch buffer and writes straight on; only bytes the
//! other side cannot take yet are copied to the heap. Other transports (TLS,
//! unix sockets) use tokio's buffered `copy_bidirectional`.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::clock::Activity;
use crate::metrics::Metrics;
use crate::server::{Rewind, Shutdown};
use crate::upstream::balance::InFlight;
use crate::upstream::socket::{self, forget_wakers};

/// Scratch space for [`Pump`], one per worker thread.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// The upstream side of a tunnel.
pub(crate) enum UpstreamSide {
    /// Switched through hyper's client.
    Hyper(OnUpgrade),
    /// Switched by the inline exchange: the socket, and the bytes that came
    /// after the `101` head.
    Tcp(TcpStream, Bytes),
}

/// What a tunnel keeps while it is open.
pub(crate) struct Tunnel {
    /// The route's activity, bumped by client-to-upstream bytes.
    pub(crate) activity: Arc<Activity>,
    pub(crate) metrics: Arc<Metrics>,
    /// TCP keepalive idle time for both sockets.
    pub(crate) keepalive: Option<Duration>,
    /// Counts the tunnel against its endpoint (least connections).
    pub(crate) in_flight: Option<InFlight>,
}

/// Joins the client's and the upstream's upgraded connections in a tracked
/// task.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: UpstreamSide,
    tunnel_state: Tunnel,
    shutdown: &Shutdown,
) {
    let force = shutdown.force_token();
    let Tunnel {
        activity,
        metrics,
        keepalive,
        in_flight,
    } = tunnel_state;
    let task = async move {
        let _in_flight = in_flight;
        let upgraded = match upstream {
            UpstreamSide::Hyper(upstream) => {
                tokio::try_join!(client, upstream).map(|(c, u)| (c, tcp_parts(u)))
            }
            UpstreamSide::Tcp(tcp, early) => client.await.map(|c| (c, Ok((tcp, early)))),
        };
        let (client, upstream) = match upgraded {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let _open = metrics.websocket_opened();
        tokio::select! {
            r = tunnel(client, upstream, &activity, keepalive) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "websocket tunnel ended with an error");
                }
            }
            () = force.cancelled() => tracing::debug!("websocket tunnel closed by shutdown"),
        }
    };
    shutdown.tracker().spawn(task);
}

/// A plain TCP socket and its early bytes, when that is what `upgraded` is.
type Parts = Result<(TcpStream, Bytes), Upgraded>;

fn tcp_parts(upgraded: Upgraded) -> Parts {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => Err(upgraded),
    }
}

async fn tunnel(
    client: Upgraded,
    upstream: Parts,
    activity: &Activity,
    keepalive: Option<Duration>,
) -> io::Result<()> {
    use hyper_util::server::conn::auto::upgrade::downcast as server_downcast;
    // Served by the auto builder (its private rewind wrapper) or by hyper's
    // HTTP/1 builder alone (the bare stream).
    let client = match server_downcast::<TokioIo<TcpStream>>(client) {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => match upgraded.downcast::<TokioIo<Rewind<TcpStream>>>() {
            // Handed to hyper by the inline server: what it put back and
            // hyper did not read yet comes after what hyper did read.
            Ok(parts) => {
                let (stream, rest) = parts.io.into_inner().into_parts();
                let early = match (parts.read_buf.is_empty(), rest.is_empty()) {
                    (_, true) => parts.read_buf,
                    (true, false) => rest,
                    (false, false) => [parts.read_buf, rest].concat().into(),
                };
                Ok((stream, early))
            }
            Err(upgraded) => tcp_parts(upgraded),
        },
    };
    match (client, upstream) {
        (Ok((c, c_early)), Ok((u, u_early))) => {
            tracing::debug!("tunnel: plain TCP on both sides, unbuffered copy");
            forget_wakers(&c);
            forget_wakers(&u);
            if let Some(idle) = keepalive {
                keep_alive(&c, idle);
                keep_alive(&u, idle);
            }
            if !c_early.is_empty() {
                activity.touch();
            }
            // Bytes hyper had already read past the handshake go first. The
            // `Bytes` may each pin hyper's whole read buffer (8 KiB or more):
            // keep a copy (usually empty) and let them go before the tunnel
            // settles in for hours.
            let (up, down) = (Dir::with(&c_early), Dir::with(&u_early));
            drop((c_early, u_early));
            Pump {
                client: &c,
                upstream: &u,
                up,
                down,
                activity,
            }
            .await
        }
        (client, upstream) => {
            tracing::debug!("tunnel: buffered copy");
            // A TLS client's socket got keepalive when it was accepted.
            if let (Some(idle), Ok((u, _))) = (keepalive, &upstream) {
                keep_alive(u, idle);
            }
            let mut client = Side::new(client, Some(activity));
            let mut upstream = Side::new(upstream, None);
            // Boxed: the rare path should not size every tunnel's task.
            Box::pin(tokio::io::copy_bidirectional(&mut client, &mut upstream))
                .await
                .map(|_| ())
        }
    }
}

/// Keepalive is a safeguard: a socket that refuses it still tunnels.
fn keep_alive(s: &TcpStream, idle: Duration) {
    if let Err(e) = socket::keepalive(s, idle) {
        tracing::debug!(error = %e, "cannot set TCP keepalive on a tunnel socket");
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One side of a buffered tunnel: bytes read before the upgrade come first,
/// and on the client side every read that yields bytes touches the route's
/// activity.
struct Side<'a> {
    early: Bytes,
    inner: Box<dyn Io>,
    activity: Option<&'a Activity>,
}

impl<'a> Side<'a> {
    fn new(io: Parts, activity: Option<&'a Activity>) -> Self {
        let (inner, early) = match io {
            Ok((stream, early)) => (Box::new(stream) as Box<dyn Io>, early),
            Err(upgraded) => (
                Box::new(TokioIo::new(upgraded)) as Box<dyn Io>,
                Bytes::new(),
            ),
        };
        Self {
            early,
            inner,
            activity,
        }
    }
}

impl AsyncRead for Side<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = if this.early.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early.split_to(n));
            if this.early.is_empty() {
                // Release the buffer the early bytes came from.
                this.early = Bytes::new();
            }
            Poll::Ready(Ok(()))
        };
        if let (Some(a), true) = (this.activity, buf.filled().len() > before) {
            a.touch();
        }
        r
    }
}

impl AsyncWrite for Side<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One direction of a [`Pump`].
#[derive(Default)]
struct Dir {
    /// Bytes read that the other side could not take yet.
    pending: Vec<u8>,
    done: bool,
}

impl Dir {
    fn with(early: &[u8]) -> Self {
        Self {
            pending: early.to_vec(),
            done: false,
        }
    }
}

/// Copies both ways between two plain TCP sockets until both directions
/// have ended, each end shutting the other socket's write side (half-close).
///
/// A hand-written future rather than two `async` copy loops: it waits
/// through the sockets' own readiness slots, so an idle tunnel's task is a
/// few hundred bytes, and it holds no buffer while waiting: a readable
/// socket is read into the worker thread's scratch buffer and written
/// straight on; only what the other side cannot take yet goes to the heap.
struct Pump<'a> {
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    up: Dir,
    down: Dir,
    activity: &'a Activity,
}

impl Future for Pump<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let up = pump(
            this.client,
            this.upstream,
            &mut this.up,
            Some(this.activity),
            cx,
        )?;
        let down = pump(this.upstream, this.client, &mut this.down, None, cx)?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// Moves bytes from `src` to `dst` until `src` ends or nothing can move.
fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: &mut Dir,
    activity: Option<&Activity>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !dir.done {
        while !dir.pending.is_empty() {
            ready!(dst.poll_write_ready(cx))?;
            match dst.try_write(&dir.pending) {
                Ok(n) => drop(dir.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if dir.pending.capacity() > 0 {
            dir.pending = Vec::new();
        }
        ready!(src.poll_read_ready(cx))?;
        BUF.with_borrow_mut(|buf| -> io::Result<()> {
            let n = match read_drained(src, buf) {
                Ok(0) => {
                    // Half-close: the other direction may still be talking.
                    let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                    dir.done = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(a) = activity {
                a.touch();
            }
            match dst.try_write(&buf[..n]) {
                Ok(m) => dir.pending.extend_from_slice(&buf[m..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dir.pending.extend_from_slice(&buf[..n]);
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
    }
    Poll::Ready(Ok(()))
}

/// Reads what `src` holds. A short read drained the socket, so it also
/// clears the runtime's record that `src` is readable, as tokio's own
/// `poll_read` does: `try_read` keeps that record until a read fails, and
/// the pump's next look then cost a `recvfrom` that found nothing, one per
/// burst of messages (a fifth of a JupyterLab user's reads).
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut drained = 0;
    let read = src.try_io(tokio::io::Interest::READABLE, || {
        let n = src.try_read(buf)?;
        if 0 < n && n < buf.len() {
            // Reported as "would block" so that the runtime forgets the
            // readiness it saw (only if no newer event came in meanwhile).
            drained = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use tokio::net::{TcpListener, TcpStream};

    struct Counted;
    impl Wake for Counted {
        fn wake(self: Arc<Self>) {}
    }

    /// A short read leaves the socket waiting for its next bytes: the pump's
    /// next look costs no `recvfrom` that finds nothing (before the fix the
    /// socket still counted as readable).
    #[tokio::test]
    async fn a_short_read_forgets_the_readiness() {
        use tokio::io::AsyncWriteExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"a message").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(super::read_drained(&server, &mut buf).unwrap(), 9);
        let waker = Waker::from(Arc::new(Counted));
        let ready = server.poll_read_ready(&mut Context::from_waker(&waker));
        assert!(ready.is_pending(), "still counted as readable: {ready:?}");
        // The next bytes are seen, and a full read keeps the readiness.
        client.write_all(&[7; 64]).await.unwrap();
        server.readable().await.unwrap();
        assert_eq!(super::read_drained(&server, &mut buf).unwrap(), 64);
        assert!(
            server
                .poll_read_ready(&mut Context::from_waker(&waker))
                .is_ready()
        );
    }

    #[tokio::test]
    async fn forget_wakers_releases_the_previous_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_server, _) = listener.accept().await.unwrap();
        // An idle socket: the read-readiness poll stores the waker.
        let owner = Arc::new(Counted);
        let waker = Waker::from(owner.clone());
        assert!(
            client
                .poll_read_ready(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(waker);
        assert_eq!(Arc::strong_count(&owner), 2, "the socket holds the waker");
        super::forget_wakers(&client);
        assert_eq!(Arc::strong_count(&owner), 1, "the socket let it go");
    }
}
