//! configurable-http-proxy's REST API (`/api/routes`), with the same paths,
//! status codes and bodies, so JupyterHub's `ConfigurableHTTPProxy` drives
//! hubgate unchanged.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::clock::parse_js_date;
use crate::error::RouteError;
use crate::metrics::Metrics;
use crate::route::{Layer, RouteStore};
use crate::server::{ConnInfo, Handler, StatusPage};

/// Largest POST body the API reads.
const MAX_BODY: usize = 1 << 20;

/// The REST API.
pub struct Api {
    routes: Arc<RouteStore>,
    token: Option<Box<[u8]>>,
    metrics: Arc<Metrics>,
    pages: Vec<(String, StatusPage)>,
}

impl Api {
    /// The API over `routes`. With `token`, every request must carry
    /// `Authorization: token <token>`; without, the API is open (CHP's rule).
    pub fn new(routes: Arc<RouteStore>, token: Option<String>, metrics: Arc<Metrics>) -> Self {
        Self {
            routes,
            token: token.map(|t| t.into_bytes().into_boxed_slice()),
            metrics,
            pages: Vec::new(),
        }
    }

    /// Adds a read-only JSON page at `path` (e.g. `/api/discovery`), behind
    /// the same token as the routes.
    pub fn with_page(mut self, path: &str, page: StatusPage) -> Self {
        self.pages.push((path.to_owned(), page));
        self
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let rest = v.trim_start().strip_prefix("token")?;
                rest.starts_with(char::is_whitespace)
                    .then(|| rest.split_whitespace().next())?
            });
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected))
    }

    async fn respond(&self, req: Request<Incoming>) -> (StatusCode, Option<String>) {
        let path = req.uri().path().trim_end_matches('/');
        if let Some((_, page)) = self.pages.iter().find(|(p, _)| p == path) {
            if !self.authorized(&req) {
                return (StatusCode::FORBIDDEN, None);
            }
            if req.method() != Method::GET {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    Some("Method not supported".into()),
                );
            }
            return (StatusCode::OK, Some(page()));
        }
        let Some(rest) = req.uri().path().strip_prefix("/api/routes") else {
            return (StatusCode::NOT_FOUND, None);
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return (StatusCode::NOT_FOUND, None);
        }
        if !self.authorized(&req) {
            return (StatusCode::FORBIDDEN, None);
        }
        let path = rest.to_owned();
        match *req.method() {
            Method::GET if path.is_empty() || path == "/" => self.list(req.uri().query()),
            Method::GET => self.get(&path),
            Method::POST => self.post(&path, req).await,
            Method::DELETE => match self.routes.remove_api_route(&path).await {
                Ok(true) => {
                    tracing::info!(route = %path, "Removing route");
                    (StatusCode::NO_CONTENT, None)
                }
                Ok(false) => (StatusCode::NOT_FOUND, None),
                Err(e) => (StatusCode::BAD_REQUEST, Some(e.to_string())),
            },
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                Some("Method not supported".to_owned()),
            ),
        }
    }

    fn list(&self, query: Option<&str>) -> (StatusCode, Option<String>) {
        let since = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == "inactive_since" || k == "inactiveSince").then_some(v)
            });
        let since = match since {
            None => None,
            Some(raw) => {
                let value = percent_encoding::percent_decode_str(&raw.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned();
                match parse_js_date(&value) {
                    Some(ms) => Some(ms),
                    None => {
                        return (
                            StatusCode::BAD_REQUEST,
                            Some(format!("Invalid datestamp '{value}' must be ISO8601.")),
                        );
                    }
                }
            }
        };
        (
            StatusCode::OK,
            Some(self.routes.load().render_api_routes(since)),
        )
    }

    fn get(&self, path: &str) -> (StatusCode, Option<String>) {
        let Ok(decoded) = crate::route::key::percent_decode(path) else {
            return (
                StatusCode::BAD_REQUEST,
                Some(RouteError::BadPath.to_string()),
            );
        };
        let key = crate::route::key::normalize_key(&decoded);
        match self.routes.load().get(Layer::Api, &key) {
            Some(route) => {
                let mut out = String::new();
                route.render_json(&mut out);
                (StatusCode::OK, Some(out))
            }
            None => (StatusCode::NOT_FOUND, None),
        }
    }

    async fn post(&self, path: &str, req: Request<Incoming>) -> (StatusCode, Option<String>) {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return match too_large {
                    true => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Some(format!("Body larger than {MAX_BODY} bytes")),
                    ),
                    false => (
                        StatusCode::BAD_REQUEST,
                        Some(format!("Body not readable: {e}")),
                    ),
                };
            }
        };
        match self.routes.add_api_route(path, &body).await {
            Ok(()) => {
                tracing::info!(route = %path, "Route added");
                (StatusCode::CREATED, None)
            }
            Err(e) => (StatusCode::BAD_REQUEST, Some(e.to_string())),
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

impl Handler for Api {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (status, body) = self.respond(req).await;
        self.metrics.api_request(status);
        match status.as_u16() {
            0..400 => tracing::info!("{} {method} {path}", status.as_u16()),
            403 => tracing::debug!("{} {method} {path}", status.as_u16()),
            400..500 => tracing::warn!(
                "{} {method} {path} {}",
                status.as_u16(),
                body.as_deref().unwrap_or("")
            ),
            _ => tracing::error!("{} {method} {path}", status.as_u16()),
        }
        let json = status == StatusCode::OK;
        let mut resp = Response::new(body.map_or_else(ResponseBody::empty, ResponseBody::full));
        *resp.status_mut() = status;
        if json {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_header_forms() {
        let api = Api::new(
            Arc::new(RouteStore::new(false)),
            Some("abc".into()),
            Arc::new(Metrics::default()),
        );
        let req = |v: &str| {
            Request::get("/api/routes")
                .header("authorization", v)
                .body(())
                .unwrap()
        };
        assert!(api.authorized(&req("token abc")));
        assert!(api.authorized(&req("token   abc  trailing")));
        assert!(!api.authorized(&req("token abcd")));
        assert!(!api.authorized(&req("tokenabc")));
        assert!(!api.authorized(&req("Bearer abc")));
        assert!(!api.authorized(&Request::get("/").body(()).unwrap()));
    }
}
