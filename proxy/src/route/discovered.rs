//! The discovery layer as the proxy takes it: plain values that a route
//! source (swarm discovery, a static file) fills in. The proxy knows nothing
//! of where they came from.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::upstream::balance::{HealthCheck, Policy};

/// One discovered route: requests matching `host` (when set) and the path
/// prefix `path` go to one of `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRoute {
    /// Who asked for it, e.g. `grafana/web` (service and router): for logs
    /// and the status page.
    pub name: String,
    /// Lower-case host name the request's `Host` must equal, if any.
    pub host: Option<String>,
    /// Path prefix, matched on whole segments like API routes.
    pub path: String,
    /// Among routes with the same host and path, the highest wins.
    pub priority: i64,
    /// What the route is shown as going to, e.g. `http://grafana:3000`.
    pub target: String,
    /// Where requests really go, e.g. `http://10.0.1.5:3000` per task.
    pub endpoints: Vec<String>,
    /// How an endpoint is chosen.
    pub policy: Policy,
    /// Keep each client on one endpoint with this cookie.
    pub sticky_cookie: Option<String>,
    /// Remove the matched prefix from the forwarded path.
    pub strip_prefix: bool,
    /// Probe the endpoints actively.
    pub health: Option<HealthCheck>,
}

impl DiscoveredRoute {
    /// A route called `name` for `path` over `endpoints`, shown as going to
    /// `target`: any host, priority 0, round robin, nothing else.
    pub fn new(name: &str, path: &str, target: &str, endpoints: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            host: None,
            path: path.to_owned(),
            priority: 0,
            target: target.to_owned(),
            endpoints,
            policy: Policy::default(),
            sticky_cookie: None,
            strip_prefix: false,
            health: None,
        }
    }
}

/// A whole discovery layer: its routes, and the task addresses of every
/// known service by name (API targets naming a service use them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveredLayer {
    /// The routes.
    pub routes: Vec<DiscoveredRoute>,
    /// Service name → task addresses on a network shared with the proxy.
    pub services: HashMap<String, Vec<IpAddr>>,
}

/// A discovered route the store did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The route's [`DiscoveredRoute::name`].
    pub name: String,
    /// Why: a bad path or target, or a route with a higher priority (or the
    /// same priority and an earlier name) for the same host and path.
    pub reason: String,
}
