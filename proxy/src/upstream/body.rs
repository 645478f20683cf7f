//! The request body on its way up: the client's streamed body, counted for
//! `last_activity` and capped at the maximum body size.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::clock::Activity;
use crate::error::BoxError;

/// Marks a request body that failed on the client's side, so the forwarder
/// answers 413 or 400 instead of blaming the upstream with a 502.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// Cut off at the size limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The client's framing was broken (a bad chunk) or it went away.
    #[error("request body from the client failed: {0}")]
    Broken(hyper::Error),
}

/// A client's request body as the handler gets it: hyper's, or none at all
/// (a request the inline HTTP/1.1 server parsed has no body).
pub(crate) trait RequestBody: Body + Send + Unpin + 'static {
    /// The streamed body, if there is one to forward.
    fn into_incoming(self) -> Option<Incoming>;

    /// Whether the request came through the inline server, which writes
    /// an inline exchange's upstream fields itself.
    const INLINE: bool = false;
}

impl RequestBody for Incoming {
    fn into_incoming(self) -> Option<Incoming> {
        Some(self)
    }
}

impl RequestBody for http_body_util::Empty<Bytes> {
    fn into_incoming(self) -> Option<Incoming> {
        None
    }

    const INLINE: bool = true;
}

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
                        return Poll::Ready(Some(Err(Box::new(ClientBodyError::TooLarge(*limit)))));
                    }
                    *remaining -= len;
                    activity.touch();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError::Broken(e)))))
            }
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
