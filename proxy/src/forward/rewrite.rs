//! From the client's request to the upstream's: the route lookup (host
//! rules first), the path (include-prefix, prepend-path, strip-prefix), `Host`,
//! hop-by-hop fields (RFC 9110 §7.6.1), `X-Forwarded-*` and custom headers.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Uri, Version, request};

use super::Proxy;
use crate::error::ProxyError;
use crate::headers::{self, Forwarded, Fresh};
use crate::route::Route;
use crate::route::key::{percent_decode, strip_segments};
use crate::server::ConnInfo;
use crate::upstream::body::{RequestBody, UpstreamBody};

impl Proxy {
    pub(super) fn route_for<B>(&self, req: &Request<B>) -> Result<Arc<Route>, ProxyError> {
        let decoded = percent_decode(req.uri().path()).map_err(|_| ProxyError::BadPath)?;
        let table = self.routes.load();
        if table.has_host_routes() {
            // Discovered host rules come first: a service that owns a host
            // name gets it even when JupyterHub's `/` catches everything else.
            let host = request_host(req).map(strip_port).unwrap_or("");
            // Browsers send lower-case hosts: copy only when one is not.
            let host = match host.bytes().any(|b| b.is_ascii_uppercase()) {
                true => std::borrow::Cow::Owned(host.to_ascii_lowercase()),
                false => std::borrow::Cow::Borrowed(host),
            };
            if let Some(route) = table.lookup_host(&host, &decoded) {
                return Ok(route.clone());
            }
        }
        let route = if self.routes.host_routing() {
            let host = request_host(req).map(strip_port).unwrap_or("");
            table.lookup(&format!("/{host}{decoded}"))
        } else {
            table.lookup(&decoded)
        };
        match route {
            Some(route) => Ok(route.clone()),
            None if table.awaiting_discovery => Err(ProxyError::RoutesLoading),
            None => Err(ProxyError::NoRoute),
        }
    }

    /// Rewrites the client's head, in place, into the upstream's: the
    /// path, `Host`, hop-by-hop and forwarded fields. The forwarded fields
    /// come back apart (`Fresh`) when they can go straight into the
    /// upstream's head rather than through the map.
    pub(super) fn rewrite(
        &self,
        parts: &mut request::Parts,
        route: &Route,
        conn: &ConnInfo,
        websocket: bool,
    ) -> Result<Option<Fresh>, ProxyError> {
        let raw_path = parts.uri.path();
        let rest = if self.config.include_prefix && !route.strip_prefix {
            raw_path
        } else {
            let host_segment = usize::from(self.routes.host_routing() && route.segments > 0);
            strip_segments(raw_path, route.segments - host_segment)
        };
        let base = if self.config.prepend_path {
            &*route.target.path
        } else {
            ""
        };
        let uri = match parts.uri.path_and_query() {
            // JupyterHub's case: the path goes upstream as it came, so reuse
            // it (a reference count; no copy, no parse).
            Some(pq) if base.is_empty() && !rest.is_empty() && rest.len() == raw_path.len() => {
                Uri::from(pq.clone())
            }
            _ => join_path(base, rest, parts.uri.query())?,
        };

        let h = &mut parts.headers;
        if self.config.change_origin {
            let authority = HeaderValue::from_str(route.target.authority.as_str())
                .map_err(|_| ProxyError::BadPath)?;
            h.insert(header::HOST, authority);
        }
        // An absolute-form or HTTP/2 authority is already in `Host`
        // (`hygiene::check`).
        headers::strip_hop_by_hop(h, websocket);
        let mut fresh = None;
        if self.config.x_forward {
            let host = h.get(header::HOST).cloned();
            let forwarded = Forwarded {
                peer: conn.peer_value.as_ref(),
                tls: conn.tls,
                websocket,
                host: host.as_ref(),
            };
            fresh = headers::forwarded(h, &forwarded);
        }
        if !self.config.custom_headers.is_empty() {
            // A custom field may name a forwarded one: it wins.
            if let Some(f) = fresh.take() {
                f.add_to(h);
            }
            for (name, value) in &self.config.custom_headers {
                h.insert(name.clone(), value.clone());
            }
        }
        headers::fix_empty_body(&parts.method, h);

        parts.uri = uri;
        parts.version = Version::HTTP_11;
        Ok(fresh)
    }

    /// The client's body as the upstream's: none when it has ended, else
    /// streamed under `--max-body-size`, counting as the route's activity.
    pub(super) fn upstream_body<B: RequestBody>(&self, body: B, route: &Route) -> UpstreamBody {
        let body = match body.is_end_stream() {
            true => None,
            false => body.into_incoming(),
        };
        match body {
            None => UpstreamBody::Empty,
            Some(inner) => {
                let limit = self.config.max_body_size.unwrap_or(u64::MAX);
                UpstreamBody::Client {
                    inner,
                    activity: route.activity.clone(),
                    remaining: limit,
                    limit,
                }
            }
        }
    }
}

/// `base` + `rest` (or `/`) + `?query`, as a URI in origin form.
fn join_path(base: &str, rest: &str, query: Option<&str>) -> Result<Uri, ProxyError> {
    let mut path =
        String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
    path.push_str(base);
    if !rest.is_empty() {
        path.push_str(rest);
    } else if base.is_empty() {
        path.push('/');
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Uri::try_from(path).map_err(|_| ProxyError::BadPath)
}

/// The request's host: `Host`, which `hygiene::check` has set from an
/// absolute-form or HTTP/2 authority.
pub(super) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// `host:port` → `host` (an IPv6 literal keeps its brackets).
pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("hub.example.org:8000"), "hub.example.org");
        assert_eq!(strip_port("hub"), "hub");
        assert_eq!(strip_port("[::1]:8000"), "[::1]");
    }
}
