//! An upstream response head, parsed in place: the head stays at the front
//! of the connection's buffer and its fields are known by offset and role.
//! The inline server copies the fields it forwards straight from there
//! into the client's head ([`write_fields`]); every other path gets them
//! as a [`HeaderMap`] ([`into_map`]), values sharing the head's buffer.

use std::io;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::decode::{State, invalid};
use crate::headers::{is_hop_by_hop, tokens};

/// Most response header fields accepted (as hyper's client).
const MAX_HEADERS: usize = 100;

/// What a response field is to the proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Forwarded as it is.
    Plain,
    /// Describes the upstream connection only (RFC 9110 §7.6.1).
    HopByHop,
    ContentLength,
    Date,
}

/// Where a field is in the head (offsets: a head is at most 64 KiB).
#[derive(Clone, Copy)]
pub(crate) struct Field {
    name: (u32, u32),
    value: (u32, u32),
    role: Role,
}

/// A parsed response head, still at the front of the buffer it came in.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    /// Its length in the buffer.
    pub(crate) len: usize,
    http11: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection` names other fields, which are then hop-by-hop too.
    pub(super) nominates: bool,
    /// Whether the last `Transfer-Encoding` ends in `chunked`, if there is one.
    chunked: Option<bool>,
    /// `Content-Length`, when present and consistent.
    length: Result<Option<u64>, &'static str>,
    /// A `Date` field.
    pub(super) date: bool,
}

/// Parses a complete head at the front of `buf`, if there is one, into
/// `fields` (cleared first; kept by the connection so this allocates
/// nothing once it has grown). The head stays in `buf`.
pub(crate) fn parse_head(buf: &BytesMut, fields: &mut Vec<Field>) -> io::Result<Option<Head>> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialized: the parser writes only the fields it finds, so the
    // 100-field array costs no 3 KiB fill per response.
    let mut parsed = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut parsed,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("bad status code"))?;
    let mut head = Head {
        status,
        len,
        http11: res.version == Some(1),
        close: false,
        nominates: false,
        chunked: None,
        length: Ok(None),
        date: false,
    };
    let base = buf.as_ptr() as usize;
    // Inside `buf`, whose head is at most `MAX_HEAD` long.
    let at = |s: &[u8]| {
        let start = u32::try_from(s.as_ptr() as usize - base).unwrap_or(u32::MAX);
        (start, start.saturating_add(s.len() as u32))
    };
    fields.clear();
    fields.reserve(res.headers.len());
    for f in res.headers.iter() {
        let role = role(f.name.as_bytes());
        match role {
            Role::HopByHop => head.hop_by_hop(f.name.as_bytes(), f.value),
            Role::ContentLength => head.length = head.length.and_then(|l| length(l, f.value)),
            Role::Date => head.date = true,
            Role::Plain => {}
        }
        fields.push(Field {
            name: at(f.name.as_bytes()),
            value: at(f.value),
            role,
        });
    }
    Ok(Some(head))
}

impl Head {
    fn hop_by_hop(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(value) {
                if t.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !(t.is_empty()
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"upgrade"))
                {
                    self.nominates = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = tokens(value).next_back().unwrap_or_default();
            self.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        }
    }

    /// Whether the connection may carry another request after this response
    /// (its body framing aside).
    pub(super) fn keep_alive(&self) -> bool {
        self.http11 && !self.close
    }

    /// Both framings at once: maybe a smuggling attempt.
    pub(super) fn both_framings(&self) -> bool {
        self.chunked.is_some() && !matches!(self.length, Ok(None))
    }
}

fn role(name: &[u8]) -> Role {
    if name.eq_ignore_ascii_case(b"content-length") {
        Role::ContentLength
    } else if name.eq_ignore_ascii_case(b"date") {
        Role::Date
    } else if is_hop_by_hop(name) {
        Role::HopByHop
    } else {
        Role::Plain
    }
}

/// One more `Content-Length` field (a list of equal values is one length).
fn length(known: Option<u64>, value: &[u8]) -> Result<Option<u64>, &'static str> {
    let mut length = known;
    for part in tokens(value) {
        let n = std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or("bad content-length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting content-length");
        }
        length = Some(n);
    }
    Ok(length)
}

/// RFC 9112 §6.3: how the body of this response is delimited.
pub(crate) fn framing(head: &Head, is_head: bool) -> io::Result<State> {
    let s = head.status;
    if is_head || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED {
        return Ok(State::Length(0));
    }
    match head.chunked {
        Some(true) => Ok(State::ChunkSize),
        Some(false) => Ok(State::UntilClose),
        None => match head.length {
            Ok(length) => Ok(length.map_or(State::UntilClose, State::Length)),
            Err(what) => Err(invalid(what)),
        },
    }
}

/// Takes the head off the front of `buf` as a header map (every field,
/// hop-by-hop ones included).
pub(crate) fn into_map(buf: &mut BytesMut, head: &Head, fields: &[Field]) -> io::Result<HeaderMap> {
    let bytes = buf.split_to(head.len).freeze();
    let range = |(start, end): (u32, u32)| start as usize..end as usize;
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(&bytes[range(f.name)])
            .map_err(|_| invalid("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(range(f.value)))
            .map_err(|_| invalid("bad header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Copies the end-to-end fields of the head at the front of `buf` (`len`
/// bytes long) into a client's head (as the upstream spelled them;
/// `Content-Length` too unless `drop_length`), then takes the head off
/// `buf`. The parser has checked
/// every name and value already; a head whose `Connection` names other
/// fields never comes here.
pub(crate) fn write_fields(
    buf: &mut BytesMut,
    len: usize,
    fields: &[Field],
    out: &mut Vec<u8>,
    drop_length: bool,
) -> bool {
    let range = |(start, end): (u32, u32)| start as usize..end as usize;
    let mut length = false;
    for f in fields {
        match f.role {
            Role::HopByHop => continue,
            Role::ContentLength if drop_length => continue,
            Role::ContentLength => length = true,
            Role::Plain | Role::Date => {}
        }
        out.extend_from_slice(&buf[range(f.name)]);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[range(f.value)]);
        out.extend_from_slice(b"\r\n");
    }
    bytes::Buf::advance(buf, len);
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (BytesMut, Head, Vec<Field>) {
        let buf = BytesMut::from(text.as_bytes());
        let mut fields = Vec::new();
        let head = parse_head(&buf, &mut fields).unwrap().unwrap();
        (buf, head, fields)
    }

    #[test]
    fn parses_a_head_in_pieces_and_keeps_what_follows() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b"[..]);
        assert!(parse_head(&buf, &mut Vec::new()).unwrap().is_none());
        buf.extend_from_slice(b"\r\n\r\nhi");
        let mut fields = Vec::new();
        let head = parse_head(&buf, &mut fields).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.keep_alive());
        assert_eq!(framing(&head, false).unwrap(), State::Length(2));
        let map = into_map(&mut buf, &head, &fields).unwrap();
        assert_eq!(map["x-a"], "b");
        assert_eq!(map["content-length"], "2");
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn rejects_garbage_and_sees_close() {
        let buf = BytesMut::from(&b"HTTP/9 abc\r\n\r\n"[..]);
        assert!(parse_head(&buf, &mut Vec::new()).is_err());
        let (_, head, _) = parsed("HTTP/1.1 204 No\r\nConnection: Close\r\n\r\n");
        assert!(!head.keep_alive());
        let (_, head, _) = parsed("HTTP/1.0 200 OK\r\n\r\n");
        assert!(!head.keep_alive());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let state = |text: &str| framing(&parsed(text).1, false).map_err(|_| ());
        assert_eq!(state("HTTP/1.1 200 OK\r\n\r\n"), Ok(State::UntilClose));
        assert_eq!(
            state("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
            Ok(State::Length(3))
        );
        assert_eq!(
            state("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Err(())
        );
        assert_eq!(
            state("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(State::ChunkSize)
        );
        assert_eq!(
            state("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Ok(State::UntilClose)
        );
        let (_, head, _) =
            parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n");
        assert_eq!(framing(&head, false).unwrap(), State::ChunkSize);
        assert!(head.both_framings());
        assert_eq!(framing(&head, true).unwrap(), State::Length(0));
    }

    #[test]
    fn writes_only_end_to_end_fields() {
        let (mut buf, head, fields) = parsed(
            "HTTP/1.1 200 OK\r\nX-A:  b \r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\
             Content-Length: 2\r\nDate: d\r\nUpgrade: h2c\r\n\r\nhi",
        );
        assert!(!head.nominates && head.date);
        let mut out = Vec::new();
        assert!(write_fields(&mut buf, head.len, &fields, &mut out, false));
        assert_eq!(out, b"X-A: b\r\nContent-Length: 2\r\nDate: d\r\n");
        assert_eq!(&buf[..], b"hi");
        let (mut buf, head, fields) = parsed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        let mut out = Vec::new();
        assert!(!write_fields(&mut buf, head.len, &fields, &mut out, true));
        assert!(out.is_empty());
        let (_, head, _) = parsed("HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n");
        assert!(head.nominates);
    }
}
