//! Header rewriting between client and upstream.
//!
//! Hop-by-hop fields (RFC 9110 §7.6.1: `Connection`, the fields it names,
//! and `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`) describe one connection and are never forwarded, except that a
//! websocket upgrade keeps `Connection: upgrade` and `Upgrade` (§7.8).
//! `X-Forwarded-*` follow configurable-http-proxy (http-proxy-3's
//! `web-incoming`/`ws-incoming` passes); `X-Real-IP` follows the nginx setup.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// True when `req` asks for a protocol upgrade hubgate tunnels: HTTP/1.1,
/// `Connection` carrying the `upgrade` token, and an `Upgrade` field.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && has_token(req.headers(), "upgrade")
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The comma-separated tokens of a field value, trimmed (empty ones too).
pub(crate) fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Removes hop-by-hop fields. With `keep_upgrade`, `Upgrade` stays and
/// `Connection` becomes exactly `upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names, no hashing: which fixed ones are there
    // (most messages carry none, or only `Connection`).
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present |= 1 << i;
        } else if name == header::UPGRADE {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if !keep_upgrade && present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Browsers send `keep-alive` or `upgrade`, which are removed below
        // anyway: skip those, so the usual request allocates nothing here.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !["keep-alive", "close", "upgrade", ""]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if !(keep_upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    // Typed names: no parsing, one hash each, only for those present.
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
    if !keep_upgrade && present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::UPGRADE);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The fixed hop-by-hop fields, `Connection` first; `Upgrade` is handled
/// on its own.
static HOP_BY_HOP: [&HeaderName; 6] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
];

/// Whether a field name as it came off the wire (any case) is hop-by-hop:
/// one of [`HOP_BY_HOP`] or `Upgrade` (the parsed response head's check).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .map(|h| h.as_str())
        .chain(["upgrade"])
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// What the forwarded headers need to know about the client connection.
pub(crate) struct Forwarded<'a> {
    /// The client's address, ready as a header value.
    pub(crate) peer: Option<&'a HeaderValue>,
    pub(crate) tls: bool,
    pub(crate) websocket: bool,
    pub(crate) host: Option<&'a HeaderValue>,
}

/// The forwarded fields of a request whose client sent none of them (the
/// common case: a client straight from the internet): each is one new
/// field, so they can be written straight into an upstream head
/// ([`Fresh::encode`]) instead of going through the header map.
pub(crate) struct Fresh {
    peer: Option<HeaderValue>,
    /// The request's `Host`: `X-Forwarded-Host` (not for websockets, as
    /// CHP), and the port's source.
    host: Option<HeaderValue>,
    forward_host: bool,
    /// Where `X-Forwarded-Port` starts in `host`; `None`: the default.
    port_at: Option<usize>,
    tls: bool,
    proto: &'static str,
}

impl Fresh {
    /// `X-Forwarded-Port`: a slice of `Host`, no value of its own.
    fn port(&self) -> &[u8] {
        match (&self.host, self.port_at) {
            (Some(host), Some(at)) => &host.as_bytes()[at..],
            _ => default_port(self.tls).as_bytes(),
        }
    }

    fn forwarded_host(&self) -> Option<&HeaderValue> {
        self.host.as_ref().filter(|_| self.forward_host)
    }

    /// The fields as head lines, in the order [`Fresh::add_to`] adds them.
    pub(crate) fn encode(&self, wire: &mut Vec<u8>) {
        let mut line = |name: &HeaderName, value: &[u8]| {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value);
            wire.extend_from_slice(b"\r\n");
        };
        if let Some(ip) = &self.peer {
            line(&X_FORWARDED_FOR, ip.as_bytes());
            line(&X_REAL_IP, ip.as_bytes());
        }
        line(&X_FORWARDED_PORT, self.port());
        line(&X_FORWARDED_PROTO, self.proto.as_bytes());
        if let Some(h) = self.forwarded_host() {
            line(&X_FORWARDED_HOST, h.as_bytes());
        }
    }

    /// The fields added to `headers`.
    pub(crate) fn add_to(self, headers: &mut HeaderMap) {
        if let Some(ip) = &self.peer {
            headers.append(X_FORWARDED_FOR.clone(), ip.clone());
            headers.append(X_REAL_IP.clone(), ip.clone());
        }
        if let Ok(port) = HeaderValue::from_bytes(self.port()) {
            headers.append(X_FORWARDED_PORT.clone(), port);
        }
        headers.append(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        if let Some(h) = self.forwarded_host() {
            headers.append(X_FORWARDED_HOST.clone(), h.clone());
        }
    }
}

/// `X-Forwarded-For/Port/Proto` appended, `X-Forwarded-Host` set when
/// absent (not for websockets, as CHP), `X-Real-IP` set. When the client
/// sent none of these, they are returned to be added later (or encoded
/// straight into the upstream head); otherwise they are joined into
/// `headers` now and `None` is returned.
pub(crate) fn forwarded(headers: &mut HeaderMap, f: &Forwarded<'_>) -> Option<Fresh> {
    let proto = match (f.websocket, f.tls) {
        (false, false) => "http",
        (false, true) => "https",
        (true, false) => "ws",
        (true, true) => "wss",
    };
    // The port after the last colon of `Host`, when it is all digits.
    let port_at = f.host.and_then(|h| {
        let h = h.as_bytes();
        let colon = h.iter().rposition(|&b| b == b':')?;
        let port = &h[colon + 1..];
        (!port.is_empty() && port.iter().all(u8::is_ascii_digit)).then_some(colon + 1)
    });
    // One pass over the names, no hashing.
    let fresh = !headers.keys().any(|n| {
        [
            &X_FORWARDED_FOR,
            &X_FORWARDED_PORT,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_REAL_IP,
        ]
        .contains(&n)
    });
    if fresh {
        return Some(Fresh {
            peer: f.peer.cloned(),
            host: f.host.cloned(),
            forward_host: !f.websocket,
            port_at,
            tls: f.tls,
            proto,
        });
    }
    let port = match (f.host, port_at) {
        (Some(h), Some(at)) => HeaderValue::from_bytes(&h.as_bytes()[at..]).ok(),
        _ => None,
    }
    .unwrap_or(HeaderValue::from_static(default_port(f.tls)));
    if let Some(ip) = f.peer {
        append(headers, &X_FORWARDED_FOR, ip);
        headers.insert(X_REAL_IP.clone(), ip.clone());
    }
    append(headers, &X_FORWARDED_PORT, &port);
    append(
        headers,
        &X_FORWARDED_PROTO,
        &HeaderValue::from_static(proto),
    );
    if !f.websocket && !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(h) = f.host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
    }
    None
}

fn default_port(tls: bool) -> &'static str {
    if tls { "443" } else { "80" }
}

/// `name: old,value` (http-proxy joins with a bare comma).
fn append(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let joined = match headers.get(name) {
        Some(old) if !old.is_empty() => {
            let mut bytes = Vec::with_capacity(old.len() + 1 + value.len());
            bytes.extend_from_slice(old.as_bytes());
            bytes.push(b',');
            bytes.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&bytes).ok()
        }
        _ => Some(value.clone()),
    };
    if let Some(v) = joined {
        headers.insert(name.clone(), v);
    }
}

/// The client's address as a header value (computed once per connection).
pub(crate) fn peer_value(ip: IpAddr) -> Option<HeaderValue> {
    match ip.to_canonical() {
        // The usual client: four numbers written by hand, not through the
        // formatting machinery (a tenth of a new connection's cost).
        IpAddr::V4(v4) => {
            let mut text = Vec::with_capacity(15);
            for (i, n) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                if n >= 100 {
                    text.push(b'0' + n / 100);
                }
                if n >= 10 {
                    text.push(b'0' + n / 10 % 10);
                }
                text.push(b'0' + n % 10);
            }
            HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
        }
        v6 => HeaderValue::from_str(&v6.to_string()).ok(),
    }
}

/// CHP sends `DELETE` and `OPTIONS` without a body with `Content-Length: 0`.
pub(crate) fn fix_empty_body(method: &Method, headers: &mut HeaderMap) {
    if (method == Method::DELETE || method == Method::OPTIONS)
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn detects_upgrades_only_on_http11_with_both_fields() {
        let req = |v, c, u: bool| {
            let mut b = Request::builder().version(v).header("connection", c);
            if u {
                b = b.header("upgrade", "websocket");
            }
            b.body(()).unwrap()
        };
        assert!(is_upgrade(&req(
            Version::HTTP_11,
            "keep-alive, Upgrade",
            true
        )));
        assert!(!is_upgrade(&req(Version::HTTP_11, "keep-alive", true)));
        assert!(!is_upgrade(&req(Version::HTTP_11, "upgrade", false)));
        assert!(!is_upgrade(&req(Version::HTTP_10, "upgrade", true)));
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    fn add_forwarded(h: &mut HeaderMap, f: &Forwarded<'_>) {
        if let Some(fresh) = forwarded(h, f) {
            fresh.add_to(h);
        }
    }

    #[test]
    fn fresh_fields_encode_as_they_are_added() {
        let host = HeaderValue::from_static("hub:8000");
        let peer = peer_value("10.1.2.3".parse().unwrap());
        let f = Forwarded {
            peer: peer.as_ref(),
            tls: false,
            websocket: false,
            host: Some(&host),
        };
        let fresh = forwarded(&mut HeaderMap::new(), &f).unwrap();
        let mut wire = Vec::new();
        fresh.encode(&mut wire);
        let mut h = HeaderMap::new();
        fresh.add_to(&mut h);
        let added: String = h
            .iter()
            .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap()))
            .collect();
        assert_eq!(String::from_utf8(wire).unwrap(), added);
        assert_eq!(
            added,
            "x-forwarded-for: 10.1.2.3\r\nx-real-ip: 10.1.2.3\r\nx-forwarded-port: 8000\r\nx-forwarded-proto: http\r\nx-forwarded-host: hub:8000\r\n"
        );
    }

    #[test]
    fn forwarded_headers_append_like_chp() {
        let host = HeaderValue::from_static("hub.example.org:8443");
        let mut h = map(&[("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "6.6.6.6")]);
        add_forwarded(
            &mut h,
            &Forwarded {
                peer: peer_value("127.0.0.2".parse().unwrap()).as_ref(),
                tls: true,
                websocket: false,
                host: Some(&host),
            },
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1,127.0.0.2");
        assert_eq!(h["x-real-ip"], "127.0.0.2");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "hub.example.org:8443");

        let mut h = HeaderMap::new();
        let host = HeaderValue::from_static("hub");
        add_forwarded(
            &mut h,
            &Forwarded {
                peer: None,
                tls: false,
                websocket: true,
                host: Some(&host),
            },
        );
        assert_eq!(h["x-forwarded-proto"], "ws");
        assert_eq!(h["x-forwarded-port"], "80");
        assert!(!h.contains_key("x-forwarded-host"), "not for websockets");

        let mut h = map(&[("host", "hub")]);
        add_forwarded(
            &mut h,
            &Forwarded {
                peer: peer_value("10.1.2.3".parse().unwrap()).as_ref(),
                tls: false,
                websocket: false,
                host: Some(&host),
            },
        );
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "hub");
    }

    #[test]
    fn wire_names_are_hop_by_hop_in_any_case() {
        for name in [
            "Connection",
            "keep-alive",
            "TE",
            "Trailer",
            "upgrade",
            "Proxy-Connection",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(!is_hop_by_hop(b"content-length") && !is_hop_by_hop(b"tee"));
    }

    #[test]
    fn peer_values_are_canonical_text() {
        for ip in ["0.0.0.0", "10.1.20.255", "127.0.0.1", "::1", "2001:db8::7"] {
            assert_eq!(peer_value(ip.parse().unwrap()).unwrap(), ip);
        }
        assert_eq!(
            peer_value("::ffff:192.168.0.9".parse().unwrap()).unwrap(),
            "192.168.0.9"
        );
    }

    #[test]
    fn empty_delete_gets_content_length_zero() {
        let mut h = HeaderMap::new();
        fix_empty_body(&Method::DELETE, &mut h);
        assert_eq!(h["content-length"], "0");
        let mut h = HeaderMap::new();
        fix_empty_body(&Method::GET, &mut h);
        assert!(h.is_empty());
    }
}
