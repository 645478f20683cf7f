//! Upstream targets: the URL a route forwards to, parsed once when the route
//! is added so that the request path does no parsing.

use std::path::PathBuf;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery};

use crate::error::RouteError;
use crate::escape::percent_decode;

/// Where a target's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Plain TCP to `host:port`.
    Tcp { host: Arc<str>, port: u16 },
    /// TLS over TCP; `host` is also the server name checked in the certificate.
    Tls { host: Arc<str>, port: u16 },
    /// A unix socket (`http+unix://<url-encoded path>`).
    Unix(PathBuf),
}

/// A parsed upstream target such as `http://10.0.1.5:8888` or
/// `http+unix://%2Frun%2Fhub.sock/prefix`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target exactly as given, echoed back by the API.
    raw: Arc<str>,
    /// The connection-pool key: scheme and address, without the path.
    pub(crate) pool_key: Arc<str>,
    pub(crate) endpoint: Endpoint,
    /// `host[:port]` for `Host` when `--change-origin` is set.
    pub(crate) authority: Authority,
    /// The target's path without a trailing `/` (`""` when it has none).
    pub(crate) path: Arc<str>,
}

impl Target {
    /// Parses a target URL. Schemes: `http`, `https`, `ws`, `wss`,
    /// `http+unix` and `unix+http`.
    pub fn parse(raw: &str) -> Result<Self, RouteError> {
        let bad = |reason| RouteError::BadTarget {
            target: raw.to_owned(),
            reason,
        };
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad("not an absolute URL"))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if !path.is_empty() && path.parse::<PathAndQuery>().is_err() {
            return Err(bad("bad path"));
        }
        let scheme = scheme.to_ascii_lowercase();
        let (endpoint, authority) = match scheme.as_str() {
            "http+unix" | "unix+http" => {
                let socket =
                    percent_decode(authority).map_err(|_| bad("bad socket path escape"))?;
                (
                    Endpoint::Unix(PathBuf::from(&*socket)),
                    Authority::from_static("localhost"),
                )
            }
            "http" | "https" | "ws" | "wss" => {
                let auth: Authority = authority.parse().map_err(|_| bad("bad host or port"))?;
                if authority.contains('@') {
                    return Err(bad("user info is not supported"));
                }
                let tls = scheme == "https" || scheme == "wss";
                let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
                let host: Arc<str> = auth
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .into();
                let endpoint = if tls {
                    Endpoint::Tls { host, port }
                } else {
                    Endpoint::Tcp { host, port }
                };
                (endpoint, auth)
            }
            _ => return Err(bad("unsupported scheme")),
        };
        let pool_key = match &endpoint {
            Endpoint::Tcp { host, port } => format!("http://{host}:{port}"),
            Endpoint::Tls { host, port } => format!("https://{host}:{port}"),
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
        };
        Ok(Self {
            raw: raw.into(),
            pool_key: pool_key.into(),
            endpoint,
            authority,
            path: path.into(),
        })
    }

    /// The target as it was given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jupyterhub_targets() {
        let t = Target::parse("http://10.0.1.5:8888").unwrap();
        assert_eq!(t.as_str(), "http://10.0.1.5:8888");
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "10.0.1.5".into(),
                port: 8888
            }
        );
        assert_eq!(&*t.path, "");

        let t = Target::parse("https://hub.example.org/foo/").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tls {
                host: "hub.example.org".into(),
                port: 443
            }
        );
        assert_eq!(&*t.path, "/foo");
        assert_eq!(&*t.pool_key, "https://hub.example.org:443");

        let t = Target::parse("http://[::1]:81/x?y").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "::1".into(),
                port: 81
            }
        );
        assert_eq!(&*t.path, "/x");

        let t = Target::parse("http+unix://%2Frun%2Fhub.sock/p").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/hub.sock".into()));
        assert_eq!(&*t.path, "/p");
    }

    #[test]
    fn rejects_what_cannot_be_forwarded_to() {
        for bad in [
            "",
            "10.0.0.1:80",
            "ftp://x",
            "http://",
            "http://a b",
            "http://u:p@h",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
