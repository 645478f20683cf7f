//! The client-facing response body: a small generated body, or one of the
//! upstream side's streamed bodies (`upstream::body`, `upstream::h1`).

use std::pin::Pin;
use std::task::{Context, Poll};

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
