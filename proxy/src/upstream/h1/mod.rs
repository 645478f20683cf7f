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
mod conn;
mod decode;
mod head;

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Response, StatusCode, request};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub(crate) use body::RawBody;
pub(crate) use conn::sweep;
#[cfg(any(fuzzing, test))]
pub(crate) use decode::{Decoded, State};
#[cfg(any(fuzzing, test))]
pub(crate) use head::{framing, parse_head};

use conn::{Conn, take_idle};
use decode::invalid;

use super::pool::Connector;
use super::target::{Endpoint, Target};
use crate::error::ProxyError;
use crate::headers::Fresh;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Room made for a response head (most fit; a bigger one grows the buffer),
/// kept small because an idle pooled connection keeps its buffer.
const HEAD_CHUNK: usize = 4 * 1024;
/// Room first made for a request head (kept by a pooled connection).
const OUT_CHUNK: usize = 1024;

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
/// idempotent, so a second delivery is harmless. With `raw`, the
/// response's upstream fields stay in its body for the inline server to
/// copy ([`RawBody::write_head`]) rather than going into its header map.
pub(crate) async fn exchange<U>(
    connector: &Connector,
    target: &Target,
    head: (&request::Parts, Option<&Fresh>),
    proxy_timeout: Option<Duration>,
    upgrade: &mut Option<U>,
    raw: bool,
) -> Result<Answer<U>, ProxyError> {
    let is_head = head.0.method == Method::HEAD;
    let mut conn = take_idle(connector.id(), &target.pool_key);
    loop {
        let reused = conn.is_some();
        let c = match conn.take() {
            Some(c) => c,
            None => Box::new(Conn {
                io: connector.connect_tcp(target).await?,
                buf: BytesMut::new(),
                out: Vec::new(),
                fields: Vec::new(),
                key: connector.key(target),
                shed_on_return: false,
            }),
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
            Ok((head, mut conn)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                let Some(client) = upgrade.take() else {
                    return Err(failed(invalid("protocol switch nobody asked for")));
                };
                let mut parts = Response::new(()).into_parts().0;
                parts.status = head.status;
                parts.headers =
                    head::into_map(&mut conn.buf, &head, &conn.fields).map_err(failed)?;
                return Ok(Answer::Switched {
                    parts,
                    upstream: conn.io,
                    early: conn.buf.freeze(),
                    client,
                });
            }
            Ok((head, conn)) => {
                return RawBody::start(conn, head, is_head, raw)
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
    mut conn: Box<Conn>,
    (head, fresh): (&request::Parts, Option<&Fresh>),
) -> Result<(head::Head, Box<Conn>), Failure> {
    encode(head, fresh, &mut conn.out);
    conn.io.write_all(&conn.out).await.map_err(Failure::Stale)?;
    let mut first = true;
    loop {
        if let Some(head) = head::parse_head(&conn.buf, &mut conn.fields).map_err(Failure::Io)? {
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                // 100 Continue, 103 Early Hints: the final answer follows.
                bytes::Buf::advance(&mut conn.buf, head.len);
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

/// The request head as it goes on the wire, with the forwarded fields
/// after the others, into `wire` (cleared first).
fn encode(head: &request::Parts, fresh: Option<&Fresh>, wire: &mut Vec<u8>) {
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    wire.clear();
    wire.reserve(OUT_CHUNK);
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

#[cfg(test)]
mod tests {
    use http::header::{self, HeaderValue};

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
}
