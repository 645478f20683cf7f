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
