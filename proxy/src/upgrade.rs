//! Websocket (and any HTTP/1.1 upgrade) tunnels: once both sides have
//! switched protocols, bytes are copied both ways, never parsed as frames.
//! A tunnel holds no reference to the route table, so route changes and
//! removals never close it; it ends when either side closes or at forced
//! shutdown. Client-to-upstream bytes count as route activity, as in CHP.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock::Activity;
use crate::metrics::Metrics;
use crate::server::Shutdown;

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
    shutdown.tracker().spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let _open = metrics.websocket_opened();
        let mut client = Counted {
            inner: TokioIo::new(client),
            activity,
        };
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "websocket tunnel ended with an error");
                }
            }
            () = force.cancelled() => tracing::debug!("websocket tunnel closed by shutdown"),
        }
    });
}

/// The client side of a tunnel: every read that yields bytes touches the
/// route's activity.
struct Counted<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
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
