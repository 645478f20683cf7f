//! A lean HTTP/1.1 upstream exchange for the most common proxied requests:
//! an idempotent method without a request body to a plain-TCP upstream
//! (JupyterHub's page, API and static-file `GET`s, and websocket upgrades).
//!
//! hyper's client runs every upstream connection as its own task and hands
//! each request to it over a channel, and the response back over another;
//! on loopback that hand-off was about a third of hubgate's user-space time
//! per request. Here the client connection's task does the exchange inline:
//! one `write` of the encoded head, `read`s until the response head parses,
//! and a response body ([`RawBody`]) that reads the socket as the client
//! takes it, then puts the connection back into this thread's pool.
//!
//! On `101 Switching Protocols` the socket itself is handed back for the
//! tunnel. Everything else (request bodies, TLS and unix-socket upstreams,
//! non-idempotent methods) goes through hyper's client.

mod body;

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode, request};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub(crate) use body::RawBody;
#[cfg(any(fuzzing, test))]
pub(crate) use body::{Decoded, State, framing};

use super::idle::{Idle, Pool, PoolKey, park, unpark};
use super::pool::Connector;
use super::target::{Endpoint, Target};
use crate::error::ProxyError;
use crate::headers::Fresh;

/// Most response header fields accepted (as hyper's client).
const MAX_HEADERS: usize = 100;
/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Room made for a response head (most fit; a bigger one grows the buffer),
/// kept small because an idle pooled connection keeps its buffer.
const HEAD_CHUNK: usize = 4 * 1024;
/// Room made for each read of body bytes.
const READ_CHUNK: usize = 16 * 1024;

/// An upstream keep-alive connection, the bytes read ahead on it, and the
/// buffer its request heads are encoded into (kept, so a pooled connection
/// encodes without allocating).
pub(crate) struct Conn {
    io: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    /// Where it goes back when idle (cloned once per connection).
    key: PoolKey,
}

thread_local! {
    static IDLE: Idle<Conn> = RefCell::new(Pool::new());
}

/// Sweeps this thread's pool of inline-exchange connections.
pub(crate) fn sweep(now: std::time::Instant) {
    super::idle::sweep(&IDLE, now, open);
}

/// Whether a request can take the inline path.
pub(crate) fn eligible(method: &Method, empty_body: bool, upgrade: bool, target: &Target) -> bool {
    empty_body
        && matches!(target.endpoint, Endpoint::Tcp { .. })
        && (!upgrade || *method == Method::GET)
        && matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
        )
}

fn put_back(conn: Conn) {
    park(&IDLE, conn, |conn| &conn.key);
}

/// An idle connection the upstream has not closed (nor written to) meanwhile.
fn take_idle(connector: u64, upstream: &str) -> Option<Conn> {
    // The runtime has already recorded a FIN or stray bytes as readiness,
    // so this costs no system call on a healthy socket.
    unpark(&IDLE, connector, upstream, open)
}

/// Neither closed nor written to by the upstream while idle.
fn open(conn: &Conn) -> bool {
    matches!(conn.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// What the upstream answered.
pub(crate) enum Answer<U> {
    /// A response whose body follows.
    Response(Response<RawBody>),
    /// `101 Switching Protocols` to an upgrade request.
    Switched {
        /// The `101` head.
        parts: http::response::Parts,
        /// The upstream socket and the bytes that came after the head.
        upstream: TcpStream,
        early: bytes::Bytes,
        /// The client's side of the upgrade, as passed in.
        client: U,
    },
}

/// Sends `head` (whose request has no body) to `target` and reads the
/// response head; `upgrade` is the client's side of an upgrade request,
/// taken out and given back with the socket on `101` only (so a caller can
/// try another endpoint after a failure to connect). A reused connection that turns out closed before any
/// response byte arrives is replaced once by a new one: the method is
/// idempotent, so a second delivery is harmless.
pub(crate) async fn exchange<U>(
    connector: &Connector,
    target: &Target,
    head: (&request::Parts, Option<&Fresh>),
    proxy_timeout: Option<Duration>,
    upgrade: &mut Option<U>,
) -> Result<Answer<U>, ProxyError> {
    let is_head = head.0.method == Method::HEAD;
    let mut conn = take_idle(connector.id(), &target.pool_key);
    loop {
        let reused = conn.is_some();
        let c = match conn.take() {
            Some(c) => c,
            None => Conn {
                io: connector.connect_tcp(target).await?,
                buf: BytesMut::new(),
                out: Vec::new(),
                key: connector.key(target),
            },
        };
        let attempt = round_trip(c, head);
        let result = match proxy_timeout {
            Some(t) => tokio::time::timeout(t, attempt)
                .await
                .map_err(|_| ProxyError::Timeout {
                    upstream: target.pool_key.to_string(),
                })?,
            None => attempt.await,
        };
        let failed = |e| ProxyError::Upstream {
            upstream: target.pool_key.to_string(),
            source: Box::new(e),
        };
        match result {
            Ok((head, conn)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                let Some(client) = upgrade.take() else {
                    return Err(failed(invalid("protocol switch nobody asked for")));
                };
                let mut parts = Response::new(()).into_parts().0;
                parts.status = head.status;
                parts.headers = head.headers;
                return Ok(Answer::Switched {
                    parts,
                    upstream: conn.io,
                    early: conn.buf.freeze(),
                    client,
                });
            }
            Ok((head, conn)) => {
                return RawBody::start(conn, head, is_head)
                    .map(Answer::Response)
                    .map_err(failed);
            }
            Err(Failure::Stale(_)) if reused => {}
            Err(Failure::Stale(e) | Failure::Io(e)) => return Err(failed(e)),
        }
    }
}

enum Failure {
    /// Nothing came back: the connection was already closed.
    Stale(io::Error),
    Io(io::Error),
}

/// Writes the request and reads up to the final response head (or a `101`).
async fn round_trip(
    mut conn: Conn,
    (head, fresh): (&request::Parts, Option<&Fresh>),
) -> Result<(Head, Conn), Failure> {
    encode(head, fresh, &mut conn.out);
    conn.io.write_all(&conn.out).await.map_err(Failure::Stale)?;
    let mut first = true;
    loop {
        if let Some(head) = parse_head(&mut conn.buf).map_err(Failure::Io)? {
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                // 100 Continue, 103 Early Hints: the final answer follows.
                first = false;
                continue;
            }
            return Ok((head, conn));
        }
        if conn.buf.len() >= MAX_HEAD {
            return Err(Failure::Io(invalid("response head too large")));
        }
        conn.buf.reserve(HEAD_CHUNK);
        match conn.io.read_buf(&mut conn.buf).await {
            Ok(0) if first && conn.buf.is_empty() => {
                return Err(Failure::Stale(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => return Err(Failure::Io(invalid("upstream closed mid-response"))),
            Ok(_) => first = false,
            Err(e) if first && conn.buf.is_empty() => return Err(Failure::Stale(e)),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A parsed response head.
pub(crate) struct Head {
    status: StatusCode,
    http11: bool,
    headers: HeaderMap,
}

/// Takes a complete head off the front of `buf`, if there is one. Header
/// values share one buffer with the head rather than being copied.
pub(crate) fn parse_head(buf: &mut BytesMut) -> io::Result<Option<Head>> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialized: the parser writes only the fields it finds, so the
    // 100-field array costs no 3 KiB fill per response.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("bad status code"))?;
    let http11 = res.version == Some(1);
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(res.headers.len());
    for f in res.headers.iter() {
        let name =
            HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| invalid("bad header name"))?;
        let start = f.value.as_ptr() as usize - base;
        spans.push((name, start, start + f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| invalid("bad header value"))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        http11,
        headers,
    }))
}

/// The request head as it goes on the wire, with the forwarded fields
/// after the others, into `wire` (cleared first).
fn encode(head: &request::Parts, fresh: Option<&Fresh>, wire: &mut Vec<u8>) {
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    wire.clear();
    wire.extend_from_slice(head.method.as_str().as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(target.as_bytes());
    wire.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        wire.extend_from_slice(name.as_str().as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    if let Some(f) = fresh {
        f.encode(wire);
    }
    wire.extend_from_slice(b"\r\n");
}

/// Whether the connection may carry another request after this response
/// (its body framing aside).
fn keep_alive(head: &Head) -> bool {
    head.http11
        && !head
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_request_head() {
        let (mut parts, ()) = http::Request::get("/user/a/api?x=1")
            .body(())
            .unwrap()
            .into_parts();
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("hub"));
        let mut wire = b"left over".to_vec();
        encode(&parts, None, &mut wire);
        assert_eq!(wire, b"GET /user/a/api?x=1 HTTP/1.1\r\nhost: hub\r\n\r\n");
    }

    #[test]
    fn parses_a_head_in_pieces_and_keeps_what_follows() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b"[..]);
        assert!(parse_head(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\r\n\r\nhi");
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.http11);
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(head.headers[header::CONTENT_LENGTH], "2");
        assert_eq!(&buf[..], b"hi");
        assert!(keep_alive(&head));
    }

    #[test]
    fn rejects_garbage_and_sees_close() {
        let mut buf = BytesMut::from(&b"HTTP/9 abc\r\n\r\n"[..]);
        assert!(parse_head(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.1 204 No\r\nConnection: Close\r\n\r\n"[..]);
        assert!(!keep_alive(&parse_head(&mut buf).unwrap().unwrap()));
        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        assert!(!keep_alive(&parse_head(&mut buf).unwrap().unwrap()));
    }
}
