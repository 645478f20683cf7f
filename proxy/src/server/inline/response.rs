//! Writing a response on an inline connection: the head encoded into the
//! connection's buffer, body bytes that are already there appended to it
//! (so a small response is one `write`), larger or later ones streamed;
//! `Content-Length` when the body's size is known, chunked otherwise.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::body::{BoxError, ResponseBody};

/// Body bytes copied behind the head rather than written on their own.
const COALESCE: usize = 16 * 1024;
/// Room first made in the connection's output buffer.
const OUT_CHUNK: usize = 1024;

/// How the body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (a `HEAD`, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
}

enum Step {
    Data(Bytes),
    /// Nothing ready yet: write what is buffered, then wait.
    Flush,
    End,
    Failed(BoxError),
}

/// Writes `resp` to `io`; `Ok(true)` when the connection can carry another
/// request. A body that fails or comes out at another length than it said
/// ends the connection (the client sees a cut-off response).
pub(super) async fn write<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    head_request: bool,
    close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let framing = if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else {
        match body.size_hint().exact() {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        }
    };
    out.clear();
    // Room for a usual head and small body at once (kept for the next
    // response), not grown a few bytes at a time on a new connection.
    out.reserve(OUT_CHUNK);
    encode_head(out, status, &parts.headers, &mut body, framing, close);
    drop(parts);
    let mut sent = 0u64;
    loop {
        let step = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(Step::End),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Step::Data(data)),
                Err(_) => Poll::Ready(Step::Flush), // trailers: dropped
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Step::Failed(e)),
            Poll::Pending if out.is_empty() => Poll::Pending,
            Poll::Pending => Poll::Ready(Step::Flush),
        })
        .await;
        match step {
            Step::End => break,
            Step::Failed(e) => {
                flush(io, out).await?;
                return Err(io::Error::other(e));
            }
            Step::Flush => flush(io, out).await?,
            Step::Data(data) if data.is_empty() || framing == Framing::None => {}
            Step::Data(data) => {
                sent += data.len() as u64;
                if framing == Framing::Chunked {
                    let _ = write!(out, "{:x}\r\n", data.len());
                }
                if out.len() + data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                } else {
                    flush(io, out).await?;
                    io.write_all(&data).await?;
                }
                if framing == Framing::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(io, out).await?;
    io.flush().await?;
    match framing {
        Framing::Length(n) if n != sent => Err(io::Error::other(format!(
            "response body of {sent} bytes where {n} were announced"
        ))),
        _ => Ok(!close),
    }
}

async fn flush<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// The head: status line, an inline exchange's upstream fields (still in
/// its body), the response's own map, then framing, `Date` and `close`.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &mut ResponseBody,
    framing: Framing,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let upstream = body
        .raw_mut()
        .and_then(|raw| raw.write_head(out, framing == Framing::Chunked))
        .unwrap_or_default();
    for (name, value) in headers {
        // Framing is this connection's own (hop-by-hop fields are gone).
        if name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && framing == Framing::Chunked)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if !upstream.length && !headers.contains_key(header::CONTENT_LENGTH) => {
            // Into the buffer itself: no string per response.
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !upstream.date && !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second, made once per second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn written(resp: Response<ResponseBody>, head: bool, close: bool) -> (String, bool) {
        let mut wire = Vec::new();
        let mut out = Vec::new();
        let kept = write(&mut wire, &mut out, resp, head, close).await.unwrap();
        (String::from_utf8(wire).unwrap(), kept)
    }

    #[tokio::test]
    async fn a_small_response_is_one_head_and_body() {
        let mut resp = Response::new(ResponseBody::full("hello"));
        resp.headers_mut()
            .insert("x-a", http::HeaderValue::from_static("b"));
        let (wire, kept) = written(resp, false, false).await;
        assert!(kept);
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\nx-a: b\r\ncontent-length: 5\r\ndate: "));
        assert!(wire.ends_with("GMT\r\n\r\nhello"), "{wire}");
    }

    #[tokio::test]
    async fn head_and_no_content_have_no_body_and_close_is_said() {
        let (wire, kept) = written(Response::new(ResponseBody::full("hello")), true, true).await;
        assert!(!kept);
        assert!(wire.contains("connection: close\r\n"));
        assert!(wire.ends_with("\r\n\r\n"), "{wire}");
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let (wire, _) = written(resp, false, false).await;
        assert!(wire.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!wire.contains("content-length"), "{wire}");
    }
}
