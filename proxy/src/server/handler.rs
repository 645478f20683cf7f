//! What the accept loops hand connections to: the [`Handler`] trait and
//! what a handler knows about the client connection.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::shutdown::Shutdown;
use crate::body::ResponseBody;
use crate::metrics::Metrics;

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;

    /// Whether plain HTTP/1.1 requests without a body go to
    /// [`Handler::handle_plain`] through the inline server (see `inline`)
    /// rather than through hyper's.
    const INLINE: bool = false;

    /// Answers a request without a body that the inline server parsed
    /// (called only when [`Handler::INLINE`] is set).
    fn handle_plain<'a>(
        &'a self,
        req: Request<PlainBody>,
        conn: &'a ConnInfo,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        let _ = (req, conn);
        std::future::ready(status_only(StatusCode::NOT_IMPLEMENTED))
    }

    /// Counters for open connections, when this handler keeps them.
    fn metrics(&self) -> Option<&Metrics> {
        None
    }
}

/// The body of a request the inline server parsed: none.
pub type PlainBody = http_body_util::Empty<bytes::Bytes>;

/// What a handler knows about the client connection.
pub struct ConnInfo {
    /// The client's address (none on a unix socket).
    pub peer: Option<IpAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// `peer` as a header value, made once per connection.
    pub(crate) peer_value: Option<http::HeaderValue>,
    pub(crate) shutdown: Shutdown,
}

/// A response with a status and no body.
pub(crate) fn status_only(status: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}
