//! Wiring between route sources (`hubgate-discovery`) and the proxy: starts
//! the source the flags ask for, turns each published [`Snapshot`] into the
//! proxy's discovery layer, and renders `GET /api/discovery`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hubgate_certs::Manager;
use hubgate_discovery::{
    Connect, Lb, Snapshot, Source, StaticSource, Status, Subscriber, SwarmConfig, SwarmSource,
    channel,
};
use hubgate_proxy::{
    DiscoveredLayer, DiscoveredRoute, HealthCheck, Policy, Rejected, RouteStore, StatusPage,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::docker_host::DockerHost;

/// The running sources and what the last layer left out.
pub(crate) struct Discovery {
    subscribers: Vec<Subscriber>,
    rejected: Arc<ArcSwap<Vec<Rejected>>>,
}

/// What the flags ask for, read from the flags and the environment here
/// (the library reads neither).
pub(crate) enum Wanted {
    /// The swarm of the engine `DOCKER_HOST` names.
    Swarm(Connect, SwarmConfig),
    File(PathBuf),
}

pub(crate) fn wanted(args: &ServeArgs) -> anyhow::Result<Vec<Wanted>> {
    let mut out = Vec::new();
    if args.swarm {
        // Read once; the client is made at each (re)connection, so an
        // engine that is not there yet is retried.
        let host = DockerHost::from_env()?;
        let connect: Connect = Box::new(move || host.connect());
        out.push(Wanted::Swarm(
            connect,
            SwarmConfig {
                networks: args.swarm_network.clone(),
                // Swarm names a task's container after its ID's first 12
                // characters, and that is the hostname inside it.
                self_container: std::env::var("HOSTNAME").ok().or_else(hostname),
                refresh: Duration::from_millis(args.swarm_refresh.max(100)),
                ..SwarmConfig::default()
            },
        ));
    }
    if let Some(path) = &args.discovery_file {
        out.push(Wanted::File(path.clone()));
    }
    Ok(out)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Starts the sources on the current runtime and keeps `routes`' discovery
/// layer equal to their merged output until `shutdown`.
pub(crate) fn start(
    wanted: Vec<Wanted>,
    routes: Arc<RouteStore>,
    certs: Option<Arc<Manager>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Discovery> {
    let mut subscribers = Vec::new();
    for w in wanted {
        let (source, name): (Box<dyn Source>, &str) = match w {
            Wanted::Swarm(connect, config) => {
                (Box::new(SwarmSource::new(connect, config)), "swarm")
            }
            Wanted::File(path) => {
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read --discovery-file {}", path.display()))?;
                let snapshot = Snapshot::from_json(&bytes)
                    .with_context(|| format!("--discovery-file {}", path.display()))?;
                (Box::new(StaticSource(snapshot)), "static")
            }
        };
        let (out, sub) = channel(name);
        tokio::spawn(source.run(out, shutdown.clone()));
        subscribers.push(sub);
    }
    let rejected = Arc::new(ArcSwap::from_pointee(Vec::new()));
    if !subscribers.is_empty() {
        let (subs, rejected, shutdown) = (subscribers.clone(), rejected.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = follow(subs, routes, rejected, certs) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    Ok(Discovery {
        subscribers,
        rejected,
    })
}

/// Applies every new layer; a source that has not synced yet contributes
/// nothing and removes nothing. With ACME on, the TLS domains of discovered
/// routes get certificates.
async fn follow(
    mut subs: Vec<Subscriber>,
    routes: Arc<RouteStore>,
    rejected: Arc<ArcSwap<Vec<Rejected>>>,
    certs: Option<Arc<Manager>>,
) {
    loop {
        let changed = subs.iter_mut().map(|s| Box::pin(s.snapshot.changed()));
        let (result, _, _) = futures_util::future::select_all(changed).await;
        if result.is_err() {
            return;
        }
        let layers: Vec<Option<Arc<Snapshot>>> = subs
            .iter_mut()
            .map(|s| s.snapshot.borrow_and_update().clone())
            .collect();
        if layers.iter().all(Option::is_none) {
            continue;
        }
        if let Some(manager) = &certs {
            let wanted = layers.iter().flatten().flat_map(|s| &s.routes);
            for r in wanted.filter(|r| !r.tls_domains.is_empty()) {
                if let Err(e) = manager.manage(r.tls_domains.clone()) {
                    tracing::warn!(route = %format!("{}/{}", r.service, r.router), error = %e, "no certificate for this route's TLS domains");
                }
            }
        }
        let layer = to_proxy(layers.iter().flatten().map(|s| &**s));
        rejected.store(Arc::new(routes.replace_discovered(layer).await));
    }
}

/// The proxy's form of the merged layers: one route per host of a router.
fn to_proxy<'a>(snapshots: impl Iterator<Item = &'a Snapshot>) -> DiscoveredLayer {
    let mut layer = DiscoveredLayer::default();
    for snapshot in snapshots {
        for (name, ips) in &snapshot.services {
            layer
                .services
                .entry(name.clone())
                .or_insert_with(|| ips.clone());
        }
        for r in &snapshot.routes {
            let hosts: Vec<Option<String>> = if r.hosts.is_empty() {
                vec![None]
            } else {
                r.hosts.iter().cloned().map(Some).collect()
            };
            for host in hosts {
                layer.routes.push(DiscoveredRoute {
                    name: format!("{}/{}", r.service, r.router),
                    host,
                    path: r.path.clone(),
                    priority: r.priority,
                    target: r.display_target(),
                    endpoints: r.endpoint_urls(),
                    policy: match r.lb {
                        Lb::RoundRobin => Policy::RoundRobin,
                        Lb::LeastConnections => Policy::LeastConnections,
                    },
                    sticky_cookie: r.sticky_cookie.clone(),
                    strip_prefix: r.strip_prefix,
                    health: r.health.as_ref().map(|h| HealthCheck {
                        path: h.path.clone(),
                        interval: h.interval,
                        timeout: h.timeout,
                    }),
                });
            }
        }
    }
    layer
}

impl Discovery {
    /// `GET /api/discovery`: sources and their state, the discovered routes
    /// with their endpoints and health, and what was left out.
    pub(crate) fn page(&self, routes: Arc<RouteStore>) -> StatusPage {
        let subs = self.subscribers.clone();
        let rejected = self.rejected.clone();
        Arc::new(move || {
            let sources: Vec<Status> = subs
                .iter()
                .map(|s| Status::clone(&s.status.borrow()))
                .collect();
            let table = routes.load();
            let mut out = Vec::new();
            let plain = table
                .routes(hubgate_proxy::Layer::Discovery)
                .map(|r| (None, r));
            for (host, route) in plain.chain(table.host_routes().map(|(h, r)| (Some(h), r))) {
                let endpoints: Vec<_> = route
                    .balancer()
                    .map(|b| {
                        b.backends()
                            .iter()
                            .map(|e| {
                                json!({
                                    "url": e.url(),
                                    "healthy": e.healthy(),
                                    "passively_down": e.passively_down(),
                                    "active": e.active(),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(json!({
                    "host": host,
                    "path": route.key(),
                    "target": route.target().as_str(),
                    "endpoints": endpoints,
                }));
            }
            let rejected: Vec<_> = rejected
                .load()
                .iter()
                .map(|r| json!({"route": r.name, "reason": r.reason}))
                .collect();
            json!({
                "sources": sources,
                "routes": out,
                "rejected": rejected,
            })
            .to_string()
        })
    }
}
