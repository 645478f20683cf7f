//! The client-facing response body: a small generated body, or one of the
//! upstream side's streamed bodies (`upstream::body`, `upstream::h1`).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pub use crate::error::BoxError;
use crate::upstream::pool::FromUpstream;

/// A response body on its way to the client.
pub enum ResponseBody {
    /// A generated body (error pages, API responses).
    Full(Option<Bytes>),
    /// Streamed from an upstream through hyper's client.
    Upstream(FromUpstream),
    /// Streamed from an upstream by the inline HTTP/1.1 exchange.
    Raw(crate::upstream::h1::RawBody),
    /// An upstream body cut off when no bytes come for a while
    /// (`--proxy-timeout` between body frames).
    Timed(Box<Timed>),
}

/// See [`ResponseBody::Timed`].
pub struct Timed {
    inner: ResponseBody,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// The upstream sent no body bytes for the proxy timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent no body bytes for {0:?}")]
struct BodyStalled(Duration);

impl ResponseBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// A body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// This body, failing once `idle` passes between two frames (one timer
    /// per body, only when a timeout is set).
    pub(crate) fn idle_limited(self, idle: Option<Duration>) -> Self {
        match idle {
            Some(idle) if !self.is_end_stream() => Self::Timed(Box::new(Timed {
                inner: self,
                idle,
                timer: Box::pin(tokio::time::sleep(idle)),
            })),
            _ => self,
        }
    }

    /// The inline upstream body, when this is one.
    pub(crate) fn raw_mut(&mut self) -> Option<&mut crate::upstream::h1::RawBody> {
        match self {
            Self::Raw(raw) => Some(raw),
            Self::Timed(t) => t.inner.raw_mut(),
            Self::Full(_) | Self::Upstream(_) => None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream(up) => match Pin::new(&mut up.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    up.done = true;
                    Poll::Ready(None)
                }
                Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(|e| Box::new(e) as BoxError))),
                Poll::Pending => Poll::Pending,
            },
            Self::Raw(raw) => Pin::new(raw).poll_frame(cx),
            Self::Timed(t) => match Pin::new(&mut t.inner).poll_frame(cx) {
                Poll::Pending => match t.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(t.idle))))),
                    Poll::Pending => Poll::Pending,
                },
                ready => {
                    let next = tokio::time::Instant::now() + t.idle;
                    t.timer.as_mut().reset(next);
                    ready
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream(up) => up.done || up.inner.is_end_stream(),
            Self::Raw(raw) => raw.is_end_stream(),
            Self::Timed(t) => t.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Upstream(up) => up.inner.size_hint(),
            Self::Raw(raw) => raw.size_hint(),
            Self::Timed(t) => t.inner.size_hint(),
        }
    }
}
