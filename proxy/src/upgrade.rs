//! Websocket (and any HTTP/1.1 upgrade) tunnels: once both sides have
//! switched protocols, bytes are copied both ways, never parsed as frames.
//! A tunnel holds no reference to the route table, so route changes and
//! removals never close it; it ends when either side closes or at forced
//! shutdown. Client-to-upstream bytes count as route activity, as in CHP.
//!
//! Idle tunnels should cost almost nothing. When both sides are plain TCP
//! (the common case behind a TLS-terminating edge or on a swarm overlay),
//! the sockets are taken back from hyper and copied by [`pipe`], which holds
//! no buffer while waiting: it waits for readability, then reads into the
//! worker thread's one scratch buffer and writes straight on; only bytes the
//! other side cannot take yet are copied to the heap. Other transports (TLS,
//! unix sockets) use tokio's buffered `copy_bidirectional`.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::clock::Activity;
use crate::metrics::Metrics;
use crate::server::Shutdown;

/// Scratch space for [`pipe`], one per worker thread.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Joins the client's and the upstream's upgraded connections in a tracked
/// task.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    activity: Arc<Activity>,
    metrics: Arc<Metrics>,
    shutdown: &Shutdown,
) {
    let force = shutdown.force_token();
    let task = async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let _open = metrics.websocket_opened();
        tokio::select! {
            r = tunnel(client, upstream, &activity) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "websocket tunnel ended with an error");
                }
            }
            () = force.cancelled() => tracing::debug!("websocket tunnel closed by shutdown"),
        }
    };
    shutdown.tracker().spawn(task);
}

async fn tunnel(client: Upgraded, upstream: Upgraded, activity: &Activity) -> io::Result<()> {
    use hyper_util::server::conn::auto::upgrade::downcast as server_downcast;
    let client = match server_downcast::<TokioIo<TcpStream>>(client) {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => Err(upgraded),
    };
    let upstream = match upstream.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => Err(upgraded),
    };
    match (client, upstream) {
        (Ok((c, c_early)), Ok((u, u_early))) => {
            tracing::debug!("tunnel: plain TCP on both sides, unbuffered copy");
            forget_wakers(&c);
            forget_wakers(&u);
            // Bytes hyper had already read past the handshake go first.
            write_all(&u, &c_early).await?;
            write_all(&c, &u_early).await?;
            if !c_early.is_empty() {
                activity.touch();
            }
            // Each `Bytes` may pin hyper's whole read buffer (8 KiB or more):
            // let them go before the tunnel settles in for hours.
            drop((c_early, u_early));
            tokio::try_join!(pipe(&c, &u, Some(activity)), pipe(&u, &c, None))?;
            Ok(())
        }
        (client, upstream) => {
            tracing::debug!("tunnel: buffered copy");
            let mut client = Side::new(client, Some(activity));
            let mut upstream = Side::new(upstream, None);
            tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .map(|_| ())
        }
    }
}

/// The sockets come from hyper's finished connection tasks, whose wakers
/// may still sit in the sockets' readiness slots. A stored waker keeps its
/// task's whole allocation (the connection future, several KiB) alive until
/// the socket next becomes ready, which for an idle websocket can be hours:
/// swap them for no-op wakers. [`pipe`] waits through its own futures; a
/// pooled upstream connection registers anew when it is next used.
pub(crate) fn forget_wakers(s: &TcpStream) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let _ = s.poll_read_ready(&mut cx);
    let _ = s.poll_write_ready(&mut cx);
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
    fn new(io: Result<(TcpStream, Bytes), Upgraded>, activity: Option<&'a Activity>) -> Self {
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

enum Step {
    /// Nothing to read after all (spurious readiness).
    Again,
    /// Everything read was written.
    Done,
    /// The other side could not take it all: these bytes wait.
    Pending(Vec<u8>),
    Eof,
}

/// Copies `src` to `dst` until `src` ends, then shuts `dst`'s write side.
async fn pipe(src: &TcpStream, dst: &TcpStream, activity: Option<&Activity>) -> io::Result<()> {
    loop {
        src.readable().await?;
        let step = BUF.with_borrow_mut(|buf| -> io::Result<Step> {
            let n = match src.try_read(buf) {
                Ok(0) => return Ok(Step::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Again),
                Err(e) => return Err(e),
            };
            if let Some(a) = activity {
                a.touch();
            }
            match dst.try_write(&buf[..n]) {
                Ok(m) if m == n => Ok(Step::Done),
                Ok(m) => Ok(Step::Pending(buf[m..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ok(Step::Pending(buf[..n].to_vec()))
                }
                Err(e) => Err(e),
            }
        })?;
        match step {
            Step::Again | Step::Done => {}
            Step::Pending(rest) => write_all(dst, &rest).await?,
            Step::Eof => {
                // Half-close: the other direction may still be talking.
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
        }
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
