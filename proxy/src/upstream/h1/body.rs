//! The response body of an inline exchange: it reads the upstream socket as
//! the client takes the bytes, decodes the framing (`Content-Length`,
//! chunked, or until close) and, once the body has been read to its end,
//! puts the connection back into the pool.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use tokio_util::io::poll_read_buf;

use super::conn::{Conn, put_back};
use super::decode::{Decoded, State, invalid};
use super::head::{Head, framing, into_map, write_fields};
use crate::clock::Activity;
use crate::error::BoxError;

/// Room made for each read of body bytes.
const READ_CHUNK: usize = 16 * 1024;

/// The upstream's response body; see the module docs.
pub struct RawBody {
    conn: Option<Box<Conn>>,
    state: State,
    reusable: bool,
    activity: Option<Arc<Activity>>,
    /// The response head's length and whether it has a `Date`, while it
    /// is still in front of the body in the connection's buffer for the
    /// inline server to copy.
    head: Option<(usize, bool)>,
}

impl RawBody {
    /// The response for `head`, which is at the front of `conn`'s buffer
    /// with the body after it. With `raw` (and no fields that `Connection`
    /// makes hop-by-hop) the head stays there for [`Self::write_head`] and
    /// the response's own map is left empty; otherwise the map holds it.
    pub(super) fn start(
        mut conn: Box<Conn>,
        head: Head,
        is_head: bool,
        raw: bool,
    ) -> io::Result<Response<Self>> {
        let state = framing(&head, is_head)?;
        // Both framings at once may be a smuggling attempt: never reuse.
        let reusable = head.keep_alive() && state != State::UntilClose && !head.both_framings();
        let status = head.status;
        let (headers, head) = if raw && !head.nominates {
            (HeaderMap::new(), Some((head.len, head.date)))
        } else {
            (into_map(&mut conn.buf, &head, &conn.fields)?, None)
        };
        let mut response = Response::new(Self {
            conn: Some(conn),
            state,
            reusable,
            activity: None,
            head,
        });
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// Writes the upstream's end-to-end fields into a client's head, if
    /// they are still here (see [`Self::start`]): all but `Content-Length`
    /// with `drop_length`. Says whether a `Content-Length` and a `Date`
    /// went out.
    pub(crate) fn write_head(&mut self, out: &mut Vec<u8>, drop_length: bool) -> Option<Sent> {
        let (len, date) = self.head.take()?;
        let conn = self.conn.as_mut()?;
        let length = write_fields(&mut conn.buf, len, &conn.fields, out, drop_length);
        Some(Sent { length, date })
    }

    /// The route activity to bump when the body has been read to the end.
    pub(crate) fn touch_on_end(&mut self, activity: Arc<Activity>) {
        self.activity = Some(activity);
    }

    fn complete(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }
}

/// What [`RawBody::write_head`] wrote of the framing and date fields.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) length: bool,
    pub(crate) date: bool,
}

impl Drop for RawBody {
    fn drop(&mut self) {
        if !self.complete() {
            return; // cut short: the connection closes with it
        }
        if let Some(activity) = &self.activity {
            activity.touch();
        }
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                crate::upstream::socket::forget_wakers(&conn.io);
                put_back(conn);
            }
        }
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some((len, _)) = this.head.take() {
            // Nobody wrote it: the body starts behind it.
            bytes::Buf::advance(&mut conn.buf, len);
        }
        loop {
            match this.state.next(&mut conn.buf) {
                Ok(Some(Decoded::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Some(Decoded::End)) => return Poll::Ready(None),
                Ok(None) => {}
                Err(what) => return err(what),
            }
            let buf = &mut conn.buf;
            // Read more from the upstream. (A read through `poll_read` also
            // lets the runtime forget readiness after a short read, so the
            // pool's check on reuse needs no system call.)
            buf.reserve(READ_CHUNK);
            match ready!(poll_read_buf(Pin::new(&mut conn.io), cx, buf)) {
                Ok(0) if this.state == State::UntilClose => {
                    this.state = State::Done;
                    this.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return err("upstream closed mid-body"),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.complete()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn err(what: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(Box::new(invalid(what)))))
}
