//! The auxiliary listeners: Prometheus metrics, the HTTP→HTTPS redirect
//! (with ACME HTTP-01 answers) and the health check.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::handler::{ConnInfo, Handler, status_only};
use crate::body::ResponseBody;
use crate::metrics::Metrics;
use crate::route::RouteStore;

/// A page of text made when asked (`/metrics` extras, API status pages).
pub type StatusPage = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /metrics` in the Prometheus text format; every other path is 404.
pub struct MetricsEndpoint {
    /// The counters to render.
    pub metrics: Arc<Metrics>,
    /// The route table, for the route count.
    pub routes: Arc<RouteStore>,
    /// More metrics text, appended (the binary's certificate expiries).
    pub extra: Option<StatusPage>,
}

impl Handler for MetricsEndpoint {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        if req.uri().path() != "/metrics" {
            return status_only(StatusCode::NOT_FOUND);
        }
        let mut text = self.metrics.render(&self.routes.load());
        if let Some(extra) = &self.extra {
            text.push_str(&extra());
        }
        let mut resp = Response::new(ResponseBody::full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

/// Answers every request with a 301 to the same URL over HTTPS
/// (`--redirect-port`), as CHP does: 400 without `Host`, `:443` omitted.
pub struct Redirect {
    /// The HTTPS port to point at.
    pub https_port: u16,
    /// Answers ACME HTTP-01 challenges (`/.well-known/acme-challenge/<token>`,
    /// RFC 8555 §8.3) instead of redirecting them: token → key authorization.
    pub http01: Option<Http01>,
}

/// Looks up the key authorization of an HTTP-01 challenge token.
pub type Http01 = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// configurable-http-proxy's health check path, answered by the proxy and
/// by the redirect listener alike (so the image's `HEALTHCHECK` on port 80
/// works with HTTPS on).
pub const HEALTH_PATH: &str = "/_chp_healthz";

/// The health check's answer.
pub fn health_answer() -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(r#"{"status": "OK"}"#));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Where ACME HTTP-01 challenges are fetched.
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl Handler for Redirect {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        if req.uri().path() == HEALTH_PATH {
            return health_answer();
        }
        if let (Some(http01), Some(token)) = (
            &self.http01,
            req.uri().path().strip_prefix(CHALLENGE_PREFIX),
        ) {
            return match http01(token) {
                Some(answer) => {
                    let mut resp = Response::new(ResponseBody::full(answer));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    resp
                }
                None => status_only(StatusCode::NOT_FOUND),
            };
        }
        let Some(host) = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        else {
            return status_only(StatusCode::BAD_REQUEST);
        };
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
            Ok(location) => {
                let mut resp = status_only(StatusCode::MOVED_PERMANENTLY);
                resp.headers_mut().insert(header::LOCATION, location);
                resp
            }
            Err(_) => status_only(StatusCode::BAD_REQUEST),
        }
    }
}
