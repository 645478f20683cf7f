//! What a source yields: a whole route layer ([`Snapshot`]) and its state
//! ([`Status`]). Plain values; the binary turns them into the proxy's types.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `http` or `https` to the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (and websockets over it).
    #[default]
    Http,
    /// TLS to the endpoints.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lb {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Fewest requests in flight and tunnels open.
    LeastConnections,
}

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Path probed with `GET`.
    pub path: String,
    /// Time between two probes of one endpoint (`interval_ms`).
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Longest wait for an answer (`timeout_ms`).
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
}

mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
    }
}

/// One discovered route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The swarm service (or static entry) it belongs to.
    pub service: String,
    /// The router's name within the service (`jupyterhub` for a detected
    /// JupyterHub single-user server).
    #[serde(default = "default_router")]
    pub router: String,
    /// Host names; empty: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix.
    #[serde(default = "root")]
    pub path: String,
    /// Higher wins among routes with the same host and path.
    #[serde(default)]
    pub priority: i64,
    /// Scheme to the endpoints.
    #[serde(default)]
    pub scheme: Scheme,
    /// The service's port (what the route is shown as going to).
    #[serde(default)]
    pub port: u16,
    /// Endpoint addresses: running task addresses on a shared network, or
    /// the service's virtual IP when `hubgate.vip` asks for it.
    pub endpoints: Vec<SocketAddr>,
    /// Remove the matched prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Keep clients on one endpoint with this cookie.
    #[serde(default)]
    pub sticky_cookie: Option<String>,
    /// Load-balancing policy.
    #[serde(default)]
    pub lb: Lb,
    /// Active health check.
    #[serde(default)]
    pub health: Option<Health>,
    /// Names a certificate must cover (for the ACME work).
    #[serde(default)]
    pub tls_domains: Vec<String>,
}

fn default_router() -> String {
    "default".into()
}

fn root() -> String {
    "/".into()
}

impl Route {
    /// What the route is shown as going to: `http://<service>:<port>`.
    pub fn display_target(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.service, self.port)
    }

    /// `scheme://address:port` for each endpoint.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|addr| format!("{}://{addr}", self.scheme.as_str()))
            .collect()
    }
}

/// A whole route layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Every route, in a stable order.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Every service on a network shared with hubgate, by name, with its
    /// running task addresses there: a CHP API target naming the service
    /// (SwarmSpawner's `http://jupyter-alice:8888`) goes to these.
    #[serde(default)]
    pub services: BTreeMap<String, Vec<IpAddr>>,
}

impl Snapshot {
    /// Parses a discovery file (the JSON form of a snapshot). Unknown keys
    /// are errors; the proxy validates each route when it takes the layer.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::DiscoveryError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Something wrong with one service, or with the source as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The service, when the problem is one service's.
    pub service: Option<String>,
    /// The label at fault, when there is one.
    pub label: Option<String>,
    /// What is wrong, and what hubgate does about it.
    pub message: String,
}

/// The connection state of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not synced yet.
    #[default]
    Starting,
    /// Synced and following events.
    Watching,
    /// Lost the API or the event stream: the last routes keep serving.
    Retrying,
    /// Done (shutdown).
    Stopped,
}

/// A source's state, for `GET /api/discovery` and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `swarm` or `static`.
    pub source: String,
    /// Connection state.
    pub state: State,
    /// The engine's API version in use, once negotiated.
    pub api_version: Option<String>,
    /// Networks hubgate reaches services on.
    pub networks: Vec<String>,
    /// When the last sync finished (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// The last error talking to the engine.
    pub last_error: Option<String>,
    /// When the next attempt is due while retrying (ms since the epoch).
    pub next_retry_ms: Option<u64>,
    /// Engine API calls made so far (events stream not counted per event).
    pub api_calls: u64,
    /// Per-service problems: bad labels, unreachable services.
    pub problems: Vec<Problem>,
}
