//! Route sources for hubgate: where discovered routes come from.
//!
//! # What it owns
//! - [`Source`]: the one trait a source implements. It runs until shutdown
//!   and publishes whole route layers ([`Snapshot`]) and its state
//!   ([`Status`]) on a [`Publisher`]; the consumer reads a [`Subscriber`].
//! - [`SwarmSource`]: Docker Swarm through the engine API (bollard, version
//!   negotiated): `hubgate.` service labels ([`labels`], `docs/labels.md`),
//!   JupyterHub single-user servers recognised by the environment
//!   SwarmSpawner gives them, task addresses on the networks hubgate shares
//!   with them (never the service VIP unless a label asks), events plus a
//!   1 s task refresh and a 30 s resync, reconnection with capped backoff.
//! - [`StaticSource`]: a fixed layer (tests, a discovery file).
//!
//! # What it does not own
//! Nothing here knows hyper's server side or the proxy's route table: the
//! binary turns a [`Snapshot`] into the proxy's discovered layer. Nothing
//! here reads files, flags or the environment either: the binary passes
//! `DOCKER_HOST`, the network names and its own hostname in
//! [`SwarmConfig`].
//!
//! # Example
//! ```no_run
//! use hubgate_discovery::{Source, SwarmConfig, SwarmSource, channel};
//! use tokio_util::sync::CancellationToken;
//! # async fn run() {
//! let (out, mut sub) = channel("swarm");
//! let connect = Box::new(bollard::Docker::connect_with_unix_defaults);
//! let source = Box::new(SwarmSource::new(connect, SwarmConfig::default()));
//! tokio::spawn(source.run(out, CancellationToken::new()));
//! while sub.snapshot.changed().await.is_ok() {
//!     let layer = sub.snapshot.borrow().clone();
//!     println!("{} routes", layer.map_or(0, |l| l.routes.len()));
//! }
//! # }
//! ```

mod error;
pub mod labels;
mod model;
mod source;
mod swarm;

pub use error::DiscoveryError;
pub use model::{Health, Lb, Problem, Route, Scheme, Snapshot, State, Status};
pub use source::{Publisher, Running, Source, StaticSource, Subscriber, channel};
pub use swarm::{Connect, SwarmConfig, SwarmSource};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
