//! Body types: what goes upstream (the client's streamed body, counted for
//! `last_activity` and capped at the maximum body size) and what goes back
//! (the upstream's streamed body, which returns its connection to the pool
//! once fully read, or a small generated body).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::clock::Activity;
use crate::pool::{self, PoolKey, Sender};

/// The error type of hubgate's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Marks a request body cut off at the size limit, so the forwarder can
/// answer 413 instead of 502.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub(crate) struct TooLarge(pub(crate) u64);

/// A request body on its way upstream.
pub(crate) enum UpstreamBody {
    Empty,
    Client {
        inner: Incoming,
        activity: Arc<Activity>,
        remaining: u64,
        limit: u64,
    },
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Self::Client {
            inner,
            activity,
            remaining,
            limit,
        } = self.get_mut()
        else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *remaining {
                        return Poll::Ready(Some(Err(Box::new(TooLarge(*limit)))));
                    }
                    *remaining -= len;
                    activity.touch();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Client { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Client { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body on its way to the client.
pub enum ResponseBody {
    /// A generated body (error pages, API responses).
    Full(Option<Bytes>),
    /// Streamed from an upstream through hyper's client.
    Upstream(FromUpstream),
    /// Streamed from an upstream by the inline HTTP/1.1 exchange.
    Raw(crate::h1::RawBody),
}

impl ResponseBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// A body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

/// The upstream's response body. When it has been read to the end, the
/// connection goes back to the pool and, for a successful response, the
/// route's activity is bumped (CHP counts completed responses below 300).
pub struct FromUpstream {
    inner: Incoming,
    done: bool,
    conn: Option<(PoolKey, Sender)>,
    activity: Option<Arc<Activity>>,
}

impl FromUpstream {
    pub(crate) fn new(
        inner: Incoming,
        conn: Option<(PoolKey, Sender)>,
        activity: Option<Arc<Activity>>,
    ) -> Self {
        Self {
            inner,
            done: false,
            conn,
            activity,
        }
    }
}

impl Drop for FromUpstream {
    fn drop(&mut self) {
        if self.done || self.inner.is_end_stream() {
            if let Some(activity) = &self.activity {
                activity.touch();
            }
            if let Some((key, sender)) = self.conn.take() {
                pool::put_back(key, sender);
            }
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream(up) => up.done || up.inner.is_end_stream(),
            Self::Raw(raw) => raw.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Upstream(up) => up.inner.size_hint(),
            Self::Raw(raw) => raw.size_hint(),
        }
    }
}
