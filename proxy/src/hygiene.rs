//! Request-target hygiene, applied to every request before it is routed
//! (a leaf: it imports nothing of the crate but the escape decoder).
//!
//! - **One host.** Two `Host` fields are a 400 (RFC 9112 §3.2); an
//!   absolute-form target's authority (or HTTP/2's `:authority`) replaces
//!   `Host` (§3.2.2); an HTTP/1.1 request without either is a 400; a host
//!   that is not `name[:port]` or `[v6][:port]` is a 400.
//! - **Dot-segments.** `.` and `..` segments are removed as RFC 3986 §5.2.4
//!   says, with `%2e`/`%2E` counting as a dot; a `..` that would climb above
//!   the root is a 400 (as nginx answers). A segment that holds an encoded
//!   slash (`%2F`) next to a dot piece (`..%2Fbob`) is a 400 too: backends
//!   disagree on whether `%2F` separates segments. The cleaned path is the
//!   one routed *and* the one forwarded, so a backend never sees a path the
//!   proxy did not route.
//! - **Methods.** `CONNECT` and `TRACE` are a 405, as nginx answers.
//! - **Framing.** `Transfer-Encoding` other than exactly `chunked` is a 501,
//!   with `Content-Length` or in HTTP/1.0 a 400 (RFC 9112 §6.1, §6.3); more
//!   than one `Content-Length` is a 400.

use std::borrow::Cow;

use http::header::{self, HeaderMap};
use http::{HeaderValue, Method, Request, Uri, Version};

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More than one `Host` field.
    #[error("more than one Host field")]
    TwoHosts,
    /// An HTTP/1.1 request with no host at all.
    #[error("HTTP/1.1 request without Host")]
    NoHost,
    /// A `Host` that is not a host name or address with an optional port.
    #[error("malformed Host")]
    BadHost,
    /// A `..` segment above the root.
    #[error("path climbs above the root")]
    AboveRoot,
    /// A dot piece inside a segment with an encoded slash.
    #[error("dot-segment hidden behind an encoded slash")]
    HiddenDots,
    /// A `%` not followed by two hex digits, or escapes that are not UTF-8.
    #[error("malformed percent-escape in the request path")]
    BadEscape,
    /// `Transfer-Encoding` together with `Content-Length`, in HTTP/1.0, or
    /// more than one `Content-Length`.
    #[error("ambiguous message framing")]
    Framing,
    /// A transfer coding other than `chunked`.
    #[error("unsupported transfer coding")]
    Coding,
    /// `CONNECT` (a forward proxy's tunnel, which a 2xx from a backend
    /// would open) or `TRACE` (echoes credentials back), as nginx refuses.
    #[error("method not allowed")]
    Method,
}

/// Checks and repairs `req` in place: the host rules, then the path.
pub(crate) fn check<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        return Err(Refusal::Method);
    }
    check_framing(req.version(), req.headers())?;
    check_host(req)?;
    if let Cow::Owned(path) = normalize_path(req.uri().path())? {
        let mut parts = req.uri().clone().into_parts();
        let with_query = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        parts.path_and_query = Some(with_query.parse().map_err(|_| Refusal::BadEscape)?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Refusal::BadEscape)?;
    }
    Ok(())
}

fn check_framing(version: Version, h: &HeaderMap) -> Result<(), Refusal> {
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() || length.is_some_and(|v| v.as_bytes().contains(&b',')) {
        return Err(Refusal::Framing);
    }
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter();
    let Some(coding) = codings.next() else {
        return Ok(());
    };
    if length.is_some() || version < Version::HTTP_11 {
        return Err(Refusal::Framing);
    }
    if codings.next().is_some()
        || !coding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Err(Refusal::Coding);
    }
    Ok(())
}

fn check_host<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::TwoHosts);
    }
    if let Some(authority) = req.uri().authority() {
        if !valid_host(authority.as_str().as_bytes()) {
            return Err(Refusal::BadHost); // userinfo (`user@host`) and the like
        }
        if host.is_none_or(|h| h.as_bytes() != authority.as_str().as_bytes()) {
            let value = HeaderValue::from_str(authority.as_str()).map_err(|_| Refusal::BadHost)?;
            req.headers_mut().insert(header::HOST, value);
        }
        return Ok(());
    }
    match host {
        Some(h) if valid_host(h.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::BadHost),
        None if req.version() == Version::HTTP_11 => Err(Refusal::NoHost),
        None => Ok(()),
    }
}

/// `reg-name [":" port]` or `"[" v6 "]" [":" port]` (RFC 3986 §3.2.2), the
/// name without percent-escapes; an empty value is allowed (§3.2).
pub fn valid_host(h: &[u8]) -> bool {
    let (name, port) = match h.first() {
        Some(b'[') => match h.iter().position(|&b| b == b']') {
            Some(end) => {
                let inner = &h[1..end];
                if !inner
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                {
                    return false;
                }
                (&h[..0], &h[end + 1..])
            }
            None => return false,
        },
        _ => match h.iter().rposition(|&b| b == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, &h[..0]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        })
}

/// The request path with dot-segments removed (RFC 3986 §5.2.4), `%2e`
/// counting as a dot, escapes otherwise kept as sent. Borrowed when there is
/// nothing to remove, which is every path a browser sends.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Ok(Cow::Borrowed(raw)); // `*`, or an authority-form target
    };
    // Only a segment starting with `.` or `%` can be a dot-segment, and only
    // one holding `%2F` can hide one.
    if !raw.contains("/.") && !raw.contains("%2") {
        return Ok(Cow::Borrowed(raw));
    }
    let mut dots_seen = false;
    for segment in rest.split('/') {
        if dot_count(segment).is_some() {
            dots_seen = true;
        } else if hides_dots(segment) {
            return Err(Refusal::HiddenDots);
        }
    }
    if !dots_seen {
        return Ok(Cow::Borrowed(raw));
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dot_count(segment) {
            Some(1) => {}
            Some(_) => {
                if kept.pop().is_none() {
                    return Err(Refusal::AboveRoot);
                }
            }
            None => kept.push(segment),
        }
        if last && dot_count(segment).is_some() {
            kept.push(""); // `/a/b/..` is `/a/`
        }
    }
    let mut out = String::with_capacity(raw.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// 1 for a `.` segment, 2 for `..`, with `%2e` as a dot.
fn dot_count(segment: &str) -> Option<usize> {
    let mut s = segment.as_bytes();
    let mut dots = 0;
    while !s.is_empty() {
        if s[0] == b'.' {
            s = &s[1..];
        } else if s.len() >= 3 && s[0] == b'%' && s[1] == b'2' && s[2].eq_ignore_ascii_case(&b'e') {
            s = &s[3..];
        } else {
            return None;
        }
        dots += 1;
    }
    (1..=2).contains(&dots).then_some(dots)
}

/// Whether a segment holding `%2F` has a `.` or `..` piece between the
/// encoded slashes.
fn hides_dots(segment: &str) -> bool {
    let lower = segment.as_bytes();
    let has_slash = lower
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
    has_slash
        && split_encoded_slash(segment)
            .into_iter()
            .any(|piece| dot_count(piece).is_some())
}

fn split_encoded_slash(segment: &str) -> Vec<&str> {
    let b = segment.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == b'%' && b[i + 1] == b'2' && b[i + 2].eq_ignore_ascii_case(&b'f') {
            pieces.push(&segment[start..i]);
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&segment[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Refusal> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn removes_dot_segments_as_rfc_3986_does() {
        assert_eq!(norm("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(norm("/a/./b").unwrap(), "/a/b");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/a//../b").unwrap(), "/a/b");
        assert_eq!(norm("/user/alice/%2e%2E/bob/x").unwrap(), "/user/bob/x");
        assert_eq!(norm("/user/alice/.%2e/bob").unwrap(), "/user/bob");
    }

    #[test]
    fn refuses_climbing_above_the_root() {
        assert_eq!(norm("/../x"), Err(Refusal::AboveRoot));
        assert_eq!(norm("/%2e%2e/%2E%2E/x"), Err(Refusal::AboveRoot));
        assert_eq!(norm("/a/../../x"), Err(Refusal::AboveRoot));
        assert_eq!(norm("/.."), Err(Refusal::AboveRoot));
    }

    #[test]
    fn refuses_dots_behind_encoded_slashes() {
        assert_eq!(norm("/user/alice/..%2Fbob"), Err(Refusal::HiddenDots));
        assert_eq!(norm("/user/alice/a%2f%2e%2e"), Err(Refusal::HiddenDots));
    }

    #[test]
    fn keeps_what_jupyterhub_sends() {
        for p in [
            "/user/alice/api/contents/dir%2Ffile.ipynb",
            "/user/a%40b.org/lab",
            "/user/alice/files/.ipynb_checkpoints/x",
            "/user/alice/tree/...",
            "/user/alice/api/kernels/1b2c/channels",
            "/user/alice/srv%20name/",
            "/",
            "*",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn checks_hosts() {
        for ok in [
            "hub.example.org",
            "hub.example.org:8000",
            "[::1]:80",
            "127.0.0.1",
            "",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a/b", "a b", "h:port", "[::1", "a@b", "[::1]x", "a%2fb", "h:123456",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn req(lines: &[(&str, &str)], version: Version) -> Request<()> {
        let mut r = Request::get("/").version(version);
        for (k, v) in lines {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn checks_framing_and_hosts_of_requests() {
        let h11 = Version::HTTP_11;
        let mut r = req(&[("host", "a"), ("host", "b")], h11);
        assert_eq!(check(&mut r), Err(Refusal::TwoHosts));
        assert_eq!(check(&mut req(&[], h11)), Err(Refusal::NoHost));
        assert_eq!(check(&mut req(&[], Version::HTTP_10)), Ok(()));
        let te = ("transfer-encoding", "chunked");
        let cl = ("content-length", "4");
        assert_eq!(
            check(&mut req(&[("host", "a"), te, cl], h11)),
            Err(Refusal::Framing)
        );
        let r10 = &mut req(&[te], Version::HTTP_10);
        assert_eq!(check(r10), Err(Refusal::Framing));
        let gz = ("transfer-encoding", "gzip, chunked");
        assert_eq!(
            check(&mut req(&[("host", "a"), gz], h11)),
            Err(Refusal::Coding)
        );
        let two = [("host", "a"), cl, ("content-length", "4")];
        assert_eq!(check(&mut req(&two, h11)), Err(Refusal::Framing));
        assert_eq!(check(&mut req(&[("host", "a"), te], h11)), Ok(()));
    }

    #[test]
    fn connect_and_trace_are_refused() {
        for m in [Method::CONNECT, Method::TRACE] {
            let mut r = Request::builder().method(m).uri("/").body(()).unwrap();
            assert_eq!(check(&mut r), Err(Refusal::Method));
        }
    }

    #[test]
    fn the_absolute_form_authority_wins() {
        let mut r = Request::get("http://inner.example/x")
            .header("host", "outer.example")
            .body(())
            .unwrap();
        check(&mut r).unwrap();
        assert_eq!(r.headers()["host"], "inner.example");
        let mut r = Request::get("http://user@inner.example/x")
            .body(())
            .unwrap();
        assert_eq!(check(&mut r), Err(Refusal::BadHost));
    }
}
