//! Typed errors of the data plane, classified by failing side so that one
//! function maps each to the status code the client sees.

use http::StatusCode;

/// The error type of hubgate's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a proxied request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the request (and there is no default route).
    #[error("no route for this request")]
    NoRoute,
    /// No route matches yet, and route discovery has not delivered its
    /// first layer (a replica that just started): retry.
    #[error("no route for this request yet: route discovery has not answered")]
    RoutesLoading,
    /// The request path holds a malformed percent-escape.
    #[error("malformed percent-escape in the request path")]
    BadPath,
    /// The request was refused before routing (see the hygiene rules).
    #[error("refused: {0}")]
    Refused(#[from] crate::hygiene::Refusal),
    /// The client's request body broke off or was malformed.
    #[error("request body failed: {0}")]
    ClientBody(String),
    /// The request body is larger than the configured maximum.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// A balanced route has no endpoint left to try (no running task, or
    /// every one refused the connection).
    #[error("no reachable endpoint for route {route}")]
    NoEndpoint {
        /// The route's key.
        route: String,
    },
    /// Connecting to the upstream failed (refused, unreachable, TLS).
    #[error("cannot connect to upstream {upstream}: {source}")]
    Connect {
        /// The upstream address.
        upstream: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to the upstream took longer than the connect timeout.
    #[error("connecting to upstream {upstream} timed out")]
    ConnectTimeout {
        /// The upstream address.
        upstream: String,
    },
    /// The upstream did not answer within `--proxy-timeout`.
    #[error("upstream {upstream} did not respond in time")]
    Timeout {
        /// The upstream address.
        upstream: String,
    },
    /// The upstream connection failed after it was established.
    #[error("upstream {upstream} failed: {source}")]
    Upstream {
        /// The upstream address.
        upstream: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl ProxyError {
    /// The status code the client gets for this error.
    ///
    /// Unreachable upstreams give 503 as configurable-http-proxy does (JupyterHub
    /// shows its "server not running" page for it); a timeout gives 504 and a
    /// broken upstream exchange 502, as RFC 9110 §15.6 defines them.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::RoutesLoading => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadPath => StatusCode::BAD_REQUEST,
            Self::Refused(crate::hygiene::Refusal::Coding) => StatusCode::NOT_IMPLEMENTED,
            Self::Refused(crate::hygiene::Refusal::Method) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Refused(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoEndpoint { .. } | Self::Connect { .. } | Self::ConnectTimeout { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, stable name for logs and metrics (`failure` field).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::RoutesLoading => "routes_loading",
            Self::BadPath => "bad_path",
            Self::Refused(_) => "refused",
            Self::ClientBody(_) => "client_body",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::NoEndpoint { .. } => "no_endpoint",
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::Timeout { .. } => "timeout",
            Self::Upstream { .. } => "upstream",
        }
    }
}

/// Why a route could not be added or restored.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The body is not a JSON object.
    #[error("Body not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `target` is missing or not a string.
    #[error("Must specify 'target' as string")]
    MissingTarget,
    /// `target` is not a URL hubgate can forward to.
    #[error("Invalid target {target:?}: {reason}")]
    BadTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The route key holds a malformed percent-escape.
    #[error("malformed percent-escape in route path")]
    BadPath,
}
