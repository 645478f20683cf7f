//! The inline HTTP/1.1 server: the connection's own task reads request
//! heads into one buffer, parses them with httparse, hands each plain
//! request (`GET` or `HEAD`, no body, no upgrade) to the handler and writes
//! the response itself — head and small bodies in one `write`. There is no
//! dispatcher between the socket and the handler, no per-request task,
//! timer or shared reference count: one timer per connection, moved only
//! when it fires early.
//!
//! Anything else — a request with a body or an upgrade, `Expect`, HTTP/1.0,
//! an absolute-form target, a head the parser refuses or one past the
//! limits — goes to hyper with the bytes read so far put back in front
//! ([`Rewind`]), and the connection stays with hyper from then on. hyper
//! then answers exactly as it would have from the first byte (its 400,
//! 414 and 431 included), and the handler applies the same hygiene and
//! routing to both paths.

mod response;

use std::mem::MaybeUninit;
use std::pin::pin;
use std::sync::Arc;

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use super::config::Limits;
use super::conn::Accept;
use super::handler::{ConnInfo, Handler, PlainBody};
use super::rewind::Rewind;
use crate::upstream::idle::SHED_AFTER;

/// Most header fields the inline parser takes (a head with more goes to
/// hyper, which applies `--max-headers`).
const FIELDS: usize = 100;
/// Room made for each read of request heads.
const READ_CHUNK: usize = 4 * 1024;
/// The most output buffer a connection keeps between responses.
const KEEP_OUT: usize = 4 * 1024;
/// A kept-alive connection waits for its next request with its buffers
/// for [`SHED_AFTER`] (the same threshold as a pooled upstream
/// connection's), then gives them up, the moment rounded up to a multiple
/// of this since the worker's start, so that the connections of one worker
/// shed together: each shed on a timer of its own woke the worker once per
/// request (a JupyterLab tab polls every few seconds; at 1,000 users, 400
/// extra wake-ups a second).
const SHED_GRID: std::time::Duration = std::time::Duration::from_millis(250);

thread_local! {
    /// Where this worker's shedding grid starts.
    static GRID_START: Instant = Instant::now();
}

/// Fields whose presence sends a request to hyper: a body's framing, an
/// upgrade, an expectation.
const FOR_HYPER: [&[u8]; 5] = [
    b"content-length",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
    b"te",
];

impl<H: Handler> Accept<H> {
    /// Serves an HTTP/1.1 connection inline until it ends or needs hyper.
    pub(super) async fn serve_inline<I>(&self, mut io: I, conn: Arc<ConnInfo>, opened: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &*self.limits;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut spans = Vec::new();
        // Timeouts run from here (see `wait`).
        let mut idle_since = opened;
        let mut served = false;
        let mut timer = pin!(tokio::time::sleep_until(opened + limits.header_timeout));
        let mut closing = pin!(self.shutdown.graceful.cancelled());
        let mut forced = pin!(self.shutdown.force.cancelled());
        loop {
            let (req, close) = loop {
                match parse(&mut buf, &mut spans, limits) {
                    Ok(Some(plain)) => break plain,
                    Ok(None) if buf.len() < limits.max_head => {}
                    Ok(None) | Err(ForHyper) => {
                        // The bytes alone, in an allocation of their size:
                        // the read buffer goes now, not after hyper's first
                        // read (a websocket's handshake is mostly this path).
                        let read = bytes::Bytes::copy_from_slice(&buf);
                        drop((buf, out, spans));
                        let io = Rewind::new(read, io);
                        return self.http(io, conn, Instant::now(), None, true).await;
                    }
                }
                let waiting = buf.is_empty();
                let Wait {
                    deadline,
                    wake,
                    shed,
                } = wait(limits, idle_since, waiting && served);
                if timer.deadline() > wake {
                    timer.as_mut().reset(wake);
                }
                if shed {
                    // Idle a while: wait holding no buffers (a JupyterLab tab
                    // polls every few seconds; a hub has thousands open).
                    (buf, out) = (BytesMut::new(), Vec::new());
                    let byte = first_byte(&mut io, timer.as_mut(), deadline, closing.as_mut());
                    let Some(byte) = byte.await else { return };
                    buf.extend_from_slice(&[byte]);
                    continue;
                }
                buf.reserve(READ_CHUNK);
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => match read {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "client connection failed");
                            return;
                        }
                    },
                    () = timer.as_mut() => {
                        if Instant::now() >= deadline {
                            tracing::debug!(peer = ?conn.peer, "client connection idle; closed");
                            return;
                        }
                        timer.as_mut().reset(wake);
                    }
                    () = closing.as_mut(), if waiting => return,
                }
            };
            let head_only = req.method() == Method::HEAD;
            // In an allocation of its own while the request is in flight: the
            // handler's state (the upstream exchange, its timeouts; about
            // 7 KiB) and the response writer's are not carried by an idle
            // connection.
            let answered = Box::pin(async {
                let resp = self.handler.handle_plain(req, &conn).await;
                let kept = response::write(&mut io, &mut out, resp, head_only, close).await;
                if let Ok(false) = kept {
                    // A FIN (or TLS close_notify) after the last response,
                    // still under the forced shutdown below.
                    let _ = io.shutdown().await;
                }
                kept
            });
            let kept = tokio::select! {
                biased;
                kept = answered => kept,
                () = forced.as_mut() => return,
            };
            if let Err(e) = &kept {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            if !matches!(kept, Ok(true)) {
                return;
            }
            (served, idle_since) = (true, Instant::now());
            if out.capacity() > KEEP_OUT {
                out = Vec::new(); // grown by a large response
            }
        }
    }
}

/// When the wait for the next head ends, when its timer fires next, and
/// whether the connection's buffers go now.
struct Wait {
    deadline: Instant,
    wake: Instant,
    shed: bool,
}

/// The first head gets the header timeout from the connection's start;
/// later ones the keep-alive time to begin (`idle`: after a response, no
/// byte yet) and the header timeout to complete, both from the end of the
/// last response. An idle connection's timer fires early once, to shed
/// its buffers.
fn wait(limits: &Limits, idle_since: Instant, idle: bool) -> Wait {
    let deadline = idle_since
        + if idle && limits.keep_alive < limits.header_timeout {
            limits.keep_alive
        } else {
            limits.header_timeout
        };
    let shed_at = on_grid(idle_since + SHED_AFTER);
    Wait {
        deadline,
        wake: if idle {
            deadline.min(shed_at)
        } else {
            deadline
        },
        shed: idle && Instant::now() >= shed_at,
    }
}

/// `at`, rounded up to this worker's shedding grid.
fn on_grid(at: Instant) -> Instant {
    const GRID: u64 = SHED_GRID.as_nanos() as u64;
    let start = GRID_START.with(|s| *s);
    // In u64 (a worker's uptime fits for 584 years): this runs on every
    // wait for a request, and a u128 division is a call of its own.
    let since = at.saturating_duration_since(start).as_nanos();
    let since = u64::try_from(since).unwrap_or(u64::MAX);
    at + std::time::Duration::from_nanos((GRID - since % GRID) % GRID)
}

/// The first byte of the next request, read with no buffer but one byte;
/// `None` when the connection ends, stays idle past `deadline` or the
/// proxy is closing.
async fn first_byte<I: AsyncRead + Unpin>(
    io: &mut I,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    deadline: Instant,
    mut closing: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> Option<u8> {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            read = io.read(&mut byte) => return matches!(read, Ok(1)).then_some(byte[0]),
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return None;
                }
                timer.as_mut().reset(deadline);
            }
            () = closing.as_mut() => return None,
        }
    }
}

/// A head for hyper (left in the buffer).
#[derive(Debug)]
struct ForHyper;

/// What the front of the buffer holds: a plain request (taken off the
/// buffer) and whether the client asked to close after it, not a whole head
/// yet (`None`), or a head for hyper.
type Head = Result<Option<(Request<PlainBody>, bool)>, ForHyper>;

/// Where a field's name and value are in the head (offsets; a head is at
/// most `--max-header-size`, far below 4 GiB).
#[derive(Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// `spans` is the connection's scratch list (kept, so parsing allocates
/// nothing once it has grown).
fn parse(buf: &mut BytesMut, spans: &mut Vec<Span>, limits: &Limits) -> Head {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ForHyper),
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Err(ForHyper),
    };
    let Some(path) = req.path else {
        return Err(ForHyper);
    };
    if req.version != Some(1)
        || len > limits.max_head
        || req.headers.len() > limits.max_fields
        || !path.starts_with('/')
        || path.len() > limits.max_request_line
    {
        return Err(ForHyper);
    }
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        // In the buffer, whose length `max_head` bounds.
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        (start, start.saturating_add(s.len() as u32))
    };
    let mut close = false;
    spans.clear();
    spans.reserve(req.headers.len());
    for f in req.headers.iter() {
        let name = f.name.as_bytes();
        if FOR_HYPER.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            return Err(ForHyper);
        }
        if name.eq_ignore_ascii_case(b"connection") {
            match f.value.trim_ascii() {
                v if v.eq_ignore_ascii_case(b"close") => close = true,
                v if v.eq_ignore_ascii_case(b"keep-alive") => {}
                _ => return Err(ForHyper),
            }
        }
        spans.push(Span {
            name: at(name),
            value: at(f.value),
        });
    }
    let path = at(path.as_bytes());
    let head = buf.split_to(len).freeze();
    let range = |(start, end): (u32, u32)| start as usize..end as usize;
    let Ok(uri) = Uri::from_maybe_shared(head.slice(range(path))) else {
        return back(buf, head);
    };
    // Just the request's own: the forwarded fields go straight into the
    // upstream head (they enter the map only on hyper's client path).
    let mut headers = HeaderMap::with_capacity(spans.len());
    for s in spans.iter() {
        let name = HeaderName::from_bytes(&head[range(s.name)]);
        let value = HeaderValue::from_maybe_shared(head.slice(range(s.value)));
        let (Ok(name), Ok(value)) = (name, value) else {
            return back(buf, head);
        };
        headers.append(name, value);
    }
    let mut request = Request::new(PlainBody::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(Some((request, close)))
}

/// Puts a head taken off the buffer back in front of it, for hyper.
fn back(buf: &mut BytesMut, head: bytes::Bytes) -> Head {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
    Err(ForHyper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(text.as_bytes());
        (parse(&mut buf, &mut Vec::new(), &Limits::default()), buf)
    }

    /// Sheds fall on a shared grid: connections idle from nearby moments
    /// shed at one moment (one wake-up of the worker, not one each).
    #[test]
    fn sheds_fall_on_the_workers_grid() {
        let start = GRID_START.with(|s| *s);
        let ms = std::time::Duration::from_millis;
        let a = on_grid(start + ms(1_010));
        let b = on_grid(start + ms(1_240));
        assert_eq!(a, b);
        assert_eq!(a, start + ms(1_250));
        assert_eq!(on_grid(start + ms(1_250)), start + ms(1_250));
        assert_eq!(on_grid(start + ms(1_251)), start + ms(1_500));
    }

    #[test]
    fn a_plain_get_is_taken_off_the_buffer() {
        let (head, rest) =
            parsed("GET /user/a/api?x=1 HTTP/1.1\r\nHost: hub\r\nX-A: b\r\n\r\nGET /");
        let (req, close) = head.unwrap().unwrap();
        assert!(!close);
        assert_eq!(req.uri(), "/user/a/api?x=1");
        assert_eq!(req.headers()["host"], "hub");
        assert_eq!(req.headers()["x-a"], "b");
        assert_eq!(&rest[..], b"GET /");
    }

    #[test]
    fn close_is_seen_and_partial_heads_wait() {
        let (head, _) = parsed("HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        assert!(matches!(head, Ok(Some((_, true)))));
        let (head, rest) = parsed("GET / HTTP/1.1\r\nHost: h\r\n");
        assert!(matches!(head, Ok(None)));
        assert_eq!(rest.len(), 25);
    }

    #[test]
    fn anything_else_stays_in_the_buffer_for_hyper() {
        for text in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, foo\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let (head, rest) = parsed(text);
            assert!(head.is_err(), "{text:?}");
            assert_eq!(&rest[..], text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn limits_send_a_head_to_hyper() {
        let limits = Limits {
            max_fields: 1,
            max_request_line: 8,
            ..Limits::default()
        };
        for text in [
            "GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
            "GET /123456789 HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(text.as_bytes());
            assert!(
                parse(&mut buf, &mut Vec::new(), &limits).is_err(),
                "{text:?}"
            );
        }
    }
}
