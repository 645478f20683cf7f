//! hubgate's data plane: the route table, HTTP and websocket forwarding, and
//! the configurable-http-proxy (CHP) REST API.
//!
//! # What it owns
//! - [`RouteStore`]: one immutable [`RouteTable`] snapshot published through
//!   `ArcSwap`. Writers (the REST API, the routes file, a discovered layer)
//!   go through the store, which builds the next table and swaps it in; a
//!   request does one `load()` and one lookup, never a lock.
//! - Endpoint sets ([`Balancer`], [`Backend`]): a discovered route, or an API
//!   route whose target names a known swarm service, spreads its requests
//!   over several endpoints (round robin, least connections, sticky cookie),
//!   skipping those that refuse connections or fail health checks; all
//!   per-request state is atomics.
//! - [`Proxy`]: the request handler. It routes by CHP's segment-wise longest
//!   prefix, rewrites headers (RFC 9110 §7.6.1 hop-by-hop, `X-Forwarded-*`),
//!   forwards over per-thread pools of keep-alive upstream connections (an
//!   inline HTTP/1.1 exchange for bodyless requests and upgrades to TCP
//!   upstreams, hyper's client for the rest), streams bodies both ways and
//!   tunnels websocket upgrades as opaque bytes.
//! - [`Api`]: CHP's `/api/routes` endpoints with token auth.
//! - [`server`]: accept loops that take a bound [`server::Listener`] and a
//!   [`server::Shutdown`], so tests bind port 0 and a supervisor can add
//!   listeners at run time.
//! - [`tls::CertResolver`]: the live certificate map behind one rustls
//!   `ServerConfig`, swappable without touching listeners, with a hook for
//!   ACME TLS-ALPN-01 challenges (and [`server::Redirect`]'s for HTTP-01).
//!
//! # What it does not own
//! Command-line flags, files and the environment belong to the `hubgate`
//! binary: this crate takes plain values (certificate PEM bytes, error page
//! bytes, the token string) and exports/imports the route table as JSON bytes.
//! Docker and ACME belong to the discovery and certificate crates: this one
//! takes a [`DiscoveredLayer`] and certificate sets, and knows neither.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use hubgate_proxy::{Proxy, ProxyConfig, RouteStore, server};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let routes = Arc::new(RouteStore::new(false));
//! routes.add_api_route("/", br#"{"target":"http://127.0.0.1:8081"}"#).await?;
//! let proxy = Arc::new(Proxy::new(ProxyConfig::default(), routes)?);
//! let listener = server::Listener::bind_tcp("127.0.0.1:0".parse()?).await?;
//! let shutdown = server::Shutdown::new();
//! server::serve(listener, server::ServeConfig::default(), proxy, shutdown).await;
//! # Ok(()) }
//! ```

mod api;
mod body;
mod clock;
mod error;
mod escape;
mod forward;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
mod headers;
pub mod hygiene;
mod metrics;
mod route;
pub mod server;
pub mod tls;
mod upgrade;
mod upstream;

pub use api::Api;
pub use body::{BoxError, ResponseBody};
pub use clock::{format_iso8601, now_ms, parse_js_date};
pub use error::{ProxyError, RouteError};
pub use forward::{DEFAULT_TCP_KEEPALIVE, ErrorPages, Proxy, ProxyConfig};
pub use metrics::Metrics;
pub use route::{DiscoveredLayer, DiscoveredRoute, Layer, Rejected, Route, RouteStore, RouteTable};
pub use server::StatusPage;
pub use upstream::balance::{Backend, Balancer, HealthCheck, Policy};
pub use upstream::target::Target;
