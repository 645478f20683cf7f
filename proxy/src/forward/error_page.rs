//! Error responses: the page from `--error-target` (CHP's
//! `<url>/<code>?url=<original>`), `--error-path` files, or a small built-in
//! HTML page; websockets get a bare status.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::body::ResponseBody;
use crate::error::ProxyError;
use crate::route::RouteStore;
use crate::upstream::body::UpstreamBody;
use crate::upstream::pool::{Connector, FromUpstream};
use crate::upstream::target::Target;

/// Error pages by status code. The binary reads `--error-path DIR` into this
/// (`<code>.html`, then `error.html` as the fallback); without pages a small
/// built-in HTML page is generated.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    by_code: HashMap<u16, Bytes>,
    fallback: Option<Bytes>,
}

impl ErrorPages {
    /// Pages by status code, plus the page for every other code.
    pub fn new(by_code: HashMap<u16, Bytes>, fallback: Option<Bytes>) -> Self {
        Self { by_code, fallback }
    }

    /// The HTML for `err`'s status.
    pub(crate) fn page(&self, err: &ProxyError) -> Bytes {
        let status = err.status();
        if let Some(page) = self
            .by_code
            .get(&status.as_u16())
            .or(self.fallback.as_ref())
        {
            return page.clone();
        }
        let code = status.as_u16();
        let reason = status.canonical_reason().unwrap_or("Error");
        let what = match err {
            ProxyError::NoEndpoint { .. } => NOT_RUNNING,
            ProxyError::RoutesLoading => LOADING,
            _ => "hubgate could not serve this request.",
        };
        Bytes::from(format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\
             <body><h1>{code} {reason}</h1><p>{what}</p></body></html>\n"
        ))
    }
}

/// The built-in page's words while route discovery has not answered yet.
const LOADING: &str = "hubgate has just started and is still learning its routes. \
     Try again in a few seconds.";

/// The built-in page's words for a service with no running task.
const NOT_RUNNING: &str = "The server for this address is not running, or is starting or \
     restarting. Try again in a few seconds.";

/// `Retry-After` (seconds) on a 503 for a service with no running task.
const RETRY_AFTER_SECS: &str = "5";

/// Longest wait for the error target's page (connect and head), far below
/// the upstream connect timeout: a dead hub must not hold every failing
/// request for 10 s.
const ERROR_TARGET_TIMEOUT: Duration = Duration::from_secs(2);
/// After the error target fails, the built-in page is used for this long
/// without asking it again.
const ERROR_TARGET_PAUSE: Duration = Duration::from_secs(5);

/// `encodeURIComponent`'s set: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Where the page of a failed request comes from: the error target (left
/// alone for a while after it fails), else the pages.
#[derive(Clone)]
pub(crate) struct ErrorResponder {
    target: Option<Target>,
    /// Until when (ms since the epoch) the error target counts as down.
    down_until: Arc<AtomicU64>,
    pages: ErrorPages,
}

/// What fetching the error target's page needs from the proxy.
pub(crate) struct Upstreams<'a> {
    pub(crate) connector: &'a Connector,
    pub(crate) routes: &'a RouteStore,
}

impl ErrorResponder {
    pub(crate) fn new(target: Option<Target>, pages: ErrorPages) -> Self {
        Self {
            target,
            down_until: Arc::default(),
            pages,
        }
    }

    /// The response for a failed request: a bare status for websockets (as
    /// CHP ≥ 5.1), else the error target's page, else a local page.
    pub(crate) async fn respond(
        &self,
        upstreams: Upstreams<'_>,
        err: &ProxyError,
        uri: &Uri,
        websocket: bool,
    ) -> Response<ResponseBody> {
        let status = err.status();
        let fetched = match (&self.target, websocket) {
            (Some(target), false) => self.fetch(&upstreams, target, status, uri).await,
            _ => None,
        };
        let mut resp = fetched.unwrap_or_else(|| {
            let mut resp = if websocket {
                Response::new(ResponseBody::empty())
            } else {
                let mut resp = Response::new(ResponseBody::full(self.pages.page(err)));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp
            };
            *resp.status_mut() = status;
            resp
        });
        if matches!(
            err,
            ProxyError::NoEndpoint { .. } | ProxyError::RoutesLoading
        ) {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }

    async fn fetch(
        &self,
        upstreams: &Upstreams<'_>,
        target: &Target,
        status: StatusCode,
        uri: &Uri,
    ) -> Option<Response<ResponseBody>> {
        let original = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let path = format!(
            "{}/{}?url={}",
            target.path,
            status.as_u16(),
            utf8_percent_encode(original, URI_COMPONENT)
        );
        let req = Request::get(path)
            .header(header::HOST, target.authority.as_str())
            .body(UpstreamBody::Empty)
            .ok()?;
        if crate::clock::now_ms() < self.down_until.load(Relaxed) {
            return None; // it failed a moment ago: the built-in page at once
        }
        // A swarm service (the hub) is reached at a task's address, as its
        // routes are; with no task, the built-in page at once (no lookup of
        // a name the swarm has no address for).
        let task = match upstreams.routes.load().service_targets(target) {
            Some(tasks) => Some(tasks.into_iter().next()?),
            None => None,
        };
        let target = task.as_ref().unwrap_or(target);
        let fetch = async {
            let mut sender = upstreams
                .connector
                .get(target)
                .await
                .map_err(|e| e.to_string())?;
            let page = sender.try_send_request(req).await;
            page.map(|p| (p, sender)).map_err(|e| e.error().to_string())
        };
        let (page, sender) = match tokio::time::timeout(ERROR_TARGET_TIMEOUT, fetch).await {
            Ok(Ok(fetched)) => fetched,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".into(),
                };
                tracing::warn!(%error, backend = %target.as_str(), "error target failed; using the built-in page for a while");
                let until = crate::clock::now_ms() + ERROR_TARGET_PAUSE.as_millis() as u64;
                self.down_until.store(until, Relaxed);
                return None;
            }
        };
        let (parts, body) = page.into_parts();
        let mut resp = Response::new(ResponseBody::Upstream(FromUpstream::new(
            body,
            Some((upstreams.connector.key(target), sender)),
            None,
        )));
        *resp.status_mut() = status;
        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
            if let Some(v) = parts.headers.get(&name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_target_url_is_encoded_like_encode_uri_component() {
        let e = utf8_percent_encode("/user/a b/?x=1&y", URI_COMPONENT).to_string();
        assert_eq!(e, "%2Fuser%2Fa%20b%2F%3Fx%3D1%26y");
    }

    #[test]
    fn files_first_then_fallback_then_built_in() {
        let pages = ErrorPages::new(
            HashMap::from([(404, Bytes::from_static(b"nf"))]),
            Some(Bytes::from_static(b"fb")),
        );
        let no_task = ProxyError::NoEndpoint {
            route: "/user/a/".into(),
        };
        assert_eq!(pages.page(&ProxyError::NoRoute), "nf");
        assert_eq!(pages.page(&no_task), "fb");
        let built_in = ErrorPages::default().page(&no_task);
        let text = std::str::from_utf8(&built_in).unwrap();
        assert!(text.contains("503 Service Unavailable"), "{text}");
        assert!(text.contains("not running, or is starting"), "{text}");
    }
}
