//! The proxy handler: route, rewrite, forward, stream back.

mod endpoint;
mod error_page;
mod rewrite;

pub use error_page::ErrorPages;
use error_page::{ErrorResponder, Upstreams};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::body::ResponseBody;
use crate::error::{ProxyError, RouteError};
use crate::headers::{self, Fresh};
use crate::metrics::Metrics;
use crate::route::{Route, RouteStore};
use crate::server::{ConnInfo, Handler, PlainBody};
use crate::tls;
use crate::upgrade;
use crate::upstream::balance::InFlight;
use crate::upstream::body::{ClientBodyError, RequestBody, UpstreamBody};
use crate::upstream::pool::FromUpstream;
use crate::upstream::pool::{Connector, Sender};
use crate::upstream::target::Target;
use crate::upstream::{h1, health};
use endpoint::{Tries, sticky_cookie, sticky_value};

/// Default TCP keepalive idle time (`--tcp-keepalive`).
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How the proxy forwards; the binary fills it from CHP's flags.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Keep the matched route prefix in the upstream path (CHP default; off
    /// with `--no-include-prefix`).
    pub include_prefix: bool,
    /// Put the target's own path in front (CHP default; off with
    /// `--no-prepend-path`).
    pub prepend_path: bool,
    /// Add `X-Forwarded-*` and `X-Real-IP` (off with `--no-x-forward`).
    pub x_forward: bool,
    /// Send the target's host as `Host` (`--change-origin`).
    pub change_origin: bool,
    /// Fields that override the request's own (`--custom-header k:v`).
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    /// Longest wait for an upstream's response head, and between two of its
    /// body frames (`--proxy-timeout`).
    pub proxy_timeout: Option<Duration>,
    /// Longest wait for a new upstream connection.
    pub connect_timeout: Duration,
    /// Largest request body accepted (like nginx `client_max_body_size`).
    pub max_body_size: Option<u64>,
    /// Fetch error pages from `<url>/<code>?url=…` (`--error-target`).
    pub error_target: Option<String>,
    /// Local error pages (`--error-path`) or the built-in page.
    pub error_pages: ErrorPages,
    /// TLS for `https` targets; `None` uses the web PKI roots.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// TCP keepalive idle time on upstream connections and on both sides of
    /// websocket tunnels (`None`: off). Well below IPVS's 900 s by default.
    pub tcp_keepalive: Option<Duration>,
    /// `Strict-Transport-Security` for responses over TLS (`--hsts`).
    pub hsts: Option<HeaderValue>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            include_prefix: true,
            prepend_path: true,
            x_forward: true,
            change_origin: false,
            custom_headers: Vec::new(),
            proxy_timeout: None,
            connect_timeout: Duration::from_secs(10),
            max_body_size: None,
            error_target: None,
            error_pages: ErrorPages::default(),
            upstream_tls: None,
            tcp_keepalive: Some(DEFAULT_TCP_KEEPALIVE),
            hsts: None,
        }
    }
}

/// The data plane: routes each request through the current route table.
///
/// A clone shares the route store and the metrics: give each worker thread
/// its own clone (in its own `Arc`), so the per-request reference count of
/// the handler never bounces between cores.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) config: ProxyConfig,
    errors: ErrorResponder,
    routes: Arc<RouteStore>,
    pub(crate) connector: Connector,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy over `routes`. Fails when `error_target` is not a usable URL.
    pub fn new(config: ProxyConfig, routes: Arc<RouteStore>) -> Result<Self, RouteError> {
        let error_target = config
            .error_target
            .as_deref()
            .map(Target::parse)
            .transpose()?;
        let tls = config
            .upstream_tls
            .clone()
            .unwrap_or_else(tls::default_client_config);
        let connector = Connector::new(tls, config.connect_timeout, config.tcp_keepalive);
        let errors = ErrorResponder::new(error_target, config.error_pages.clone());
        Ok(Self {
            config,
            errors,
            routes,
            connector,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The route store this proxy reads.
    pub fn routes(&self) -> &Arc<RouteStore> {
        &self.routes
    }

    /// The proxy's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs the active health checks of every discovered route that has
    /// one, against the live route table, until `shutdown`.
    pub async fn run_health_checks(&self, shutdown: CancellationToken) {
        let routes = self.routes.clone();
        let current = move || routes.load().discovered_balancers();
        health::run(current, self.connector.clone(), shutdown).await;
    }

    async fn forward<B: RequestBody>(
        &self,
        mut req: Request<B>,
        conn: &ConnInfo,
        websocket: bool,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        crate::hygiene::check(&mut req)?;
        let route = self.route_for(&req)?;
        if let (Some(limit), Some(len)) =
            (self.config.max_body_size, req.body().size_hint().exact())
        {
            if len > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
        }
        let pinned = sticky_value(&req, &route);
        let mut client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        // The head is rewritten where it lies, not moved into a request of
        // the upstream's and out again (about 250 instructions and 216 bytes
        // of the future a request).
        let (mut head, body) = req.into_parts();
        let fresh = self.rewrite(&mut head, &route, conn, websocket)?;
        let body = self.upstream_body(body, &route);
        let mut tries = Tries::new(&route, pinned.as_deref());
        let empty = matches!(body, UpstreamBody::Empty);
        if !h1::eligible(&head.method, empty, websocket, &route.target) {
            // In an allocation of its own: with hyper's client (request
            // bodies, TLS and unix-socket upstreams) in it, this future was
            // 6.3 KiB for every request, 1.9 KiB without.
            let upstream_req = Request::from_parts(head, body);
            let hyper = self.through_hyper(upstream_req, fresh, tries, client_upgrade, conn);
            return Box::pin(hyper).await;
        }
        let timeout = self.config.proxy_timeout;
        loop {
            let attempt = tries.next()?;
            let exchange = h1::exchange(
                &self.connector,
                attempt.target,
                (&head, fresh.as_ref()),
                timeout,
                &mut client_upgrade,
                B::INLINE,
            );
            match exchange.await {
                Ok(answer) => {
                    attempt.backend.inspect(|b| b.connected());
                    let sticky = sticky_cookie(&route, attempt.backend, tries.pinned());
                    return Ok(self.answer(answer, &route, conn, attempt.in_flight, sticky));
                }
                Err(e) if tries.again(&attempt, &e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A request through hyper's client: any the inline exchange does not
    /// take (`h1::eligible`: a body, a TLS or unix-socket upstream, a
    /// method other than GET, HEAD, OPTIONS, DELETE or PUT).
    async fn through_hyper(
        &self,
        mut upstream_req: Request<UpstreamBody>,
        fresh: Option<Fresh>,
        mut tries: Tries<'_>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        conn: &ConnInfo,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        if let Some(f) = fresh {
            f.add_to(upstream_req.headers_mut());
        }
        let (attempt, mut sender) = loop {
            let attempt = tries.next()?;
            match self.connector.get(attempt.target).await {
                Ok(sender) => break (attempt, sender),
                Err(e) if tries.again(&attempt, &e) => {}
                Err(e) => return Err(e),
            }
        };
        attempt.backend.inspect(|b| b.connected());
        let target = attempt.target;
        let response = match self.send(&mut sender, upstream_req, target).await {
            Err(SendError::Retry(req)) => {
                // The pooled connection was closed before the request went
                // out: nothing reached the upstream, so a new one is safe.
                sender = self.connector.connect(target).await?;
                self.send(&mut sender, *req, target).await
            }
            other => other,
        }
        .map_err(|e| match e {
            SendError::Failed(e) => e,
            SendError::Retry(_) => ProxyError::Connect {
                upstream: target.pool_key.to_string(),
                source: std::io::Error::other("connection closed before the request was sent"),
            },
        })?;
        let route = tries.route();
        let sticky = sticky_cookie(route, attempt.backend, tries.pinned());
        let upstream = Upstream {
            sender,
            target,
            in_flight: attempt.in_flight,
            sticky,
        };
        Ok(self.client_response(response, upstream, route, client_upgrade, conn))
    }

    async fn send(
        &self,
        sender: &mut Sender,
        req: Request<UpstreamBody>,
        target: &Target,
    ) -> Result<Response<Incoming>, SendError> {
        let upstream = || target.pool_key.to_string();
        let exchange = sender.try_send_request(req);
        let result = match self.config.proxy_timeout {
            Some(t) => tokio::time::timeout(t, exchange).await.map_err(|_| {
                SendError::Failed(ProxyError::Timeout {
                    upstream: upstream(),
                })
            })?,
            None => exchange.await,
        };
        result.map_err(|mut e| match e.take_message() {
            Some(req) => SendError::Retry(Box::new(req)),
            None => {
                let source = e.into_error();
                SendError::Failed(
                    client_fault(&source).unwrap_or_else(|| ProxyError::Upstream {
                        upstream: upstream(),
                        source: Box::new(source),
                    }),
                )
            }
        })
    }

    /// Starts the tunnel for a `101` and returns the `101` for the client.
    fn switched(
        &self,
        mut parts: http::response::Parts,
        client: hyper::upgrade::OnUpgrade,
        upstream: upgrade::UpstreamSide,
        route: &Route,
        conn: &ConnInfo,
        in_flight: Option<InFlight>,
    ) -> Response<ResponseBody> {
        let tunnel = upgrade::Tunnel {
            activity: route.activity.clone(),
            metrics: self.metrics.clone(),
            keepalive: self.config.tcp_keepalive,
            in_flight,
        };
        upgrade::spawn_tunnel(client, upstream, tunnel, &conn.shutdown);
        headers::strip_hop_by_hop(&mut parts.headers, true);
        Response::from_parts(parts, ResponseBody::empty())
    }

    /// The client's response to an inline exchange.
    fn answer(
        &self,
        answer: h1::Answer<hyper::upgrade::OnUpgrade>,
        route: &Route,
        conn: &ConnInfo,
        in_flight: Option<InFlight>,
        sticky: Option<HeaderValue>,
    ) -> Response<ResponseBody> {
        match answer {
            h1::Answer::Switched {
                parts,
                upstream,
                early,
                client,
            } => {
                let upstream = upgrade::UpstreamSide::Tcp(upstream, early);
                self.switched(parts, client, upstream, route, conn, in_flight)
            }
            h1::Answer::Response(response) => {
                let (parts, mut body) = response.into_parts();
                if parts.status.as_u16() < 300 {
                    body.touch_on_end(route.activity.clone());
                }
                self.finish(parts, ResponseBody::Raw(body), sticky)
            }
        }
    }

    fn client_response(
        &self,
        mut response: Response<Incoming>,
        upstream: Upstream<'_>,
        route: &Route,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        conn: &ConnInfo,
    ) -> Response<ResponseBody> {
        let status = response.status();
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client)) = (status, client_upgrade) {
            let side = upgrade::UpstreamSide::Hyper(hyper::upgrade::on(&mut response));
            let (parts, _) = response.into_parts();
            return self.switched(parts, client, side, route, conn, upstream.in_flight);
        }
        let (parts, body) = response.into_parts();
        let activity = status.as_u16().lt(&300).then(|| route.activity.clone());
        let body = FromUpstream::new(
            body,
            Some((self.connector.key(upstream.target), upstream.sender)),
            activity,
        );
        self.finish(parts, ResponseBody::Upstream(body), upstream.sticky)
    }

    /// The client's response from an upstream's head and body: hop-by-hop
    /// fields gone, the sticky-session cookie added, the body cut when the
    /// upstream goes silent for the proxy timeout.
    fn finish(
        &self,
        mut parts: http::response::Parts,
        body: ResponseBody,
        sticky: Option<HeaderValue>,
    ) -> Response<ResponseBody> {
        headers::strip_hop_by_hop(&mut parts.headers, false);
        if let Some(cookie) = sticky {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        Response::from_parts(parts, body.idle_limited(self.config.proxy_timeout))
    }
}

/// The endpoint a request went to, and what its response still needs.
struct Upstream<'a> {
    sender: Sender,
    target: &'a Target,
    in_flight: Option<InFlight>,
    sticky: Option<HeaderValue>,
}

enum SendError {
    /// The request never left; it can go on a new connection.
    Retry(Box<Request<UpstreamBody>>),
    Failed(ProxyError),
}

/// Finds a failure of the client's body in a hyper error's source chain.
fn client_fault(e: &hyper::Error) -> Option<ProxyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        match err.downcast_ref::<ClientBodyError>() {
            Some(ClientBodyError::TooLarge(limit)) => {
                return Some(ProxyError::BodyTooLarge { limit: *limit });
            }
            Some(ClientBodyError::Broken(e)) => {
                return Some(ProxyError::ClientBody(e.to_string()));
            }
            None => source = err.source(),
        }
    }
    None
}

impl Handler for Proxy {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        self.respond(req, &conn).await
    }

    const INLINE: bool = true;

    fn handle_plain<'a>(
        &'a self,
        req: Request<PlainBody>,
        conn: &'a ConnInfo,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        self.respond(req, conn)
    }

    fn metrics(&self) -> Option<&Metrics> {
        Some(&self.metrics)
    }
}

impl Proxy {
    /// One request, from hyper's server or the inline one: forwarded, or
    /// answered with an error page; counted and logged either way.
    async fn respond<B: RequestBody>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
    ) -> Response<ResponseBody> {
        if req.uri().path() == crate::server::HEALTH_PATH {
            return crate::server::health_answer();
        }
        let start = Instant::now();
        let uri = req.uri().clone();
        let method = req.method().clone();
        let websocket = headers::is_upgrade(&req);
        let (mut response, failure) = match self.forward(req, conn, websocket).await {
            Ok(resp) => (resp, None),
            Err(e) => {
                let level_warn = !matches!(
                    e,
                    ProxyError::NoRoute | ProxyError::BadPath | ProxyError::Refused(_)
                );
                if level_warn {
                    tracing::warn!(
                        method = %method,
                        path = uri.path(),
                        failure = e.kind(),
                        error = %e,
                        "proxy error"
                    );
                }
                self.metrics.upstream_error(&e);
                let upstreams = Upstreams {
                    connector: &self.connector,
                    routes: &self.routes,
                };
                // Boxed: fetching an error target's page is a request of
                // its own (a 5.7 KiB future) that every request would
                // otherwise carry.
                let page = Box::pin(self.errors.respond(upstreams, &e, &uri, websocket)).await;
                (page, Some(e.kind()))
            }
        };
        if let (true, Some(hsts)) = (conn.tls, &self.config.hsts) {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        let elapsed = start.elapsed();
        self.metrics.request(response.status(), elapsed);
        tracing::info!(
            target: "hubgate::access",
            method = %method,
            path = uri.path(),
            status = response.status().as_u16(),
            failure,
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            peer = conn.peer.map(tracing::field::display),
        );
        response
    }
}

#[cfg(test)]
mod tests;
