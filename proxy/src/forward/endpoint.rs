//! Choosing a balanced route's endpoint for one request: the next untried
//! one, failing over on refused connections, and sticky-session cookies.

use std::sync::Arc;

use http::Request;
use http::header::{self, HeaderValue};

use crate::error::ProxyError;
use crate::route::Route;
use crate::upstream::balance::{Backend, InFlight};
use crate::upstream::target::Target;

/// Endpoints of a balanced route tried for one request before giving up
/// (only failures to connect move on: nothing reached the upstream).
const MAX_ENDPOINT_TRIES: u32 = 3;

/// One request's way through its route's endpoints: the ones it tried,
/// and how many times.
pub(super) struct Tries<'r> {
    route: &'r Route,
    pinned: Option<&'r str>,
    tried: u64,
    count: u32,
}

/// One endpoint to try.
pub(super) struct Attempt<'r> {
    pub(super) target: &'r Target,
    pub(super) backend: Option<&'r Arc<Backend>>,
    /// Counts the request against its endpoint (least connections) from
    /// the moment it is picked until the response ends or the try fails.
    pub(super) in_flight: Option<InFlight>,
}

impl<'r> Tries<'r> {
    /// No endpoint tried yet; `pinned` is the sticky session's endpoint.
    pub(super) fn new(route: &'r Route, pinned: Option<&'r str>) -> Self {
        Self {
            route,
            pinned,
            tried: 0,
            count: 0,
        }
    }

    /// The route whose endpoints these are.
    pub(super) fn route(&self) -> &'r Route {
        self.route
    }

    /// The sticky session's endpoint, if the request named one.
    pub(super) fn pinned(&self) -> Option<&'r str> {
        self.pinned
    }

    /// The next endpoint (503 when none is left).
    pub(super) fn next(&mut self) -> Result<Attempt<'r>, ProxyError> {
        let (target, backend) = pick(self.route, self.pinned, &mut self.tried)?;
        self.count += 1;
        Ok(Attempt {
            target,
            backend,
            in_flight: backend.map(InFlight::new),
        })
    }

    /// Whether a failed try moves on to another endpoint: a failure to
    /// connect (the endpoint is marked down), with tries left.
    pub(super) fn again(&self, attempt: &Attempt<'_>, e: &ProxyError) -> bool {
        connect_failed(attempt.backend, e) && self.count < MAX_ENDPOINT_TRIES
    }
}

/// The next endpoint to try: the route's own target, or one of its
/// balancer's endpoints not tried yet (503 when none is left).
fn pick<'r>(
    route: &'r Route,
    pinned: Option<&str>,
    tried: &mut u64,
) -> Result<(&'r Target, Option<&'r Arc<Backend>>), ProxyError> {
    let Some(balancer) = &route.balancer else {
        return Ok((&route.target, None));
    };
    let (i, backend) = balancer
        .pick(pinned, *tried)
        .ok_or_else(|| ProxyError::NoEndpoint {
            route: route.key().to_owned(),
        })?;
    *tried |= 1u64
        .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
        .unwrap_or(0);
    Ok((&backend.target, Some(backend)))
}

/// Whether `e` is a failure to connect to a balanced route's endpoint (then
/// marked down for a while, so the next requests go elsewhere).
fn connect_failed(backend: Option<&Arc<Backend>>, e: &ProxyError) -> bool {
    let Some(b) = backend else {
        return false;
    };
    if !matches!(
        e,
        ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
    ) {
        return false;
    }
    tracing::info!(backend = b.url(), error = %e, "endpoint unreachable");
    b.connect_failed();
    true
}

/// The request's sticky-session cookie value, when its route sticks.
pub(super) fn sticky_value<B>(req: &Request<B>, route: &Route) -> Option<String> {
    let name = route.balancer.as_ref()?.sticky_cookie()?;
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// `Set-Cookie` pinning the client to `backend`, unless it already is.
pub(super) fn sticky_cookie(
    route: &Route,
    backend: Option<&Arc<Backend>>,
    pinned: Option<&str>,
) -> Option<HeaderValue> {
    let name = route.balancer.as_ref()?.sticky_cookie()?;
    let backend = backend?;
    if pinned == Some(&*backend.id) {
        return None;
    }
    let path = if route.key().starts_with('/') {
        route.key()
    } else {
        "/"
    };
    HeaderValue::try_from(format!(
        "{name}={}; Path={path}; HttpOnly; SameSite=Lax",
        backend.id
    ))
    .ok()
}
