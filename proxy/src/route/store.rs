//! The route store: one writer at a time builds the next table from the
//! current one and publishes it; readers `load()` without locking.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::{Mutex, watch};

use std::collections::HashMap;

use super::data::RouteData;
use super::discovered::{DiscoveredLayer, DiscoveredRoute, Rejected};
use super::key::{normalize_key, percent_decode};
use super::table::{Layer, Map, Route, RouteTable};
use crate::clock::{Activity, now_ms};
use crate::error::RouteError;
use crate::upstream::balance::Balancer;
use crate::upstream::target::Target;

/// Publishes [`RouteTable`] snapshots. Every write builds and validates the
/// whole next version first, then swaps it in; a failed write changes nothing.
pub struct RouteStore {
    table: ArcSwap<RouteTable>,
    /// Serialises writers only; the request path never touches it.
    writer: Mutex<()>,
    host_routing: bool,
    changed: watch::Sender<u64>,
}

impl RouteStore {
    /// An empty store. With `host_routing`, keys carry the host as their first
    /// segment and the API adds `host` to each route's data.
    pub fn new(host_routing: bool) -> Self {
        Self {
            table: ArcSwap::from_pointee(RouteTable::default()),
            writer: Mutex::new(()),
            host_routing,
            changed: watch::Sender::new(0),
        }
    }

    /// The current table, for one request: no lock, no allocation.
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Whether keys carry the host as their first segment.
    pub fn host_routing(&self) -> bool {
        self.host_routing
    }

    /// A receiver that sees the version of every newly published table (for
    /// persisting the routes file).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// CHP's `POST /api/routes/{path}`: stores `body` (a JSON object with a
    /// string `target`) under the percent-decoded `path`, replacing any route
    /// there. `last_activity` starts now.
    pub async fn add_api_route(&self, path: &str, body: &[u8]) -> Result<(), RouteError> {
        let route = self.build_route(path, body, false)?;
        self.write(|t| put_api(t, route)).await;
        Ok(())
    }

    /// CHP's `DELETE /api/routes/{path}`: true when a route was removed.
    pub async fn remove_api_route(&self, path: &str) -> Result<bool, RouteError> {
        let key = normalize_key(&percent_decode(path).map_err(|_| RouteError::BadPath)?);
        Ok(self.write(|t| t.remove(Layer::Api, &key).is_some()).await)
    }

    /// Restores the API layer from `GET /api/routes` output (the routes file),
    /// keeping each route's `last_activity`. All entries are validated first:
    /// one bad entry rejects the whole input and the table stays as it was.
    pub async fn restore_api_routes(&self, json: &[u8]) -> Result<usize, RouteError> {
        let entries: indexmap::IndexMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_slice(json)?;
        let routes = entries
            .iter()
            .map(|(key, body)| self.build_route(key, body.get().as_bytes(), true))
            .collect::<Result<Vec<_>, _>>()?;
        let n = routes.len();
        self.write(|t| routes.into_iter().for_each(|r| put_api(t, r)))
            .await;
        Ok(n)
    }

    /// Marks the table as waiting for its first discovery layer: until
    /// [`RouteStore::replace_discovered`] delivers one, requests that match
    /// no route get a 503 (retry) instead of a 404.
    pub async fn await_discovery(&self) {
        self.write(|t| t.awaiting_discovery = true).await;
    }

    /// Replaces the whole discovery layer. Each route is validated on its
    /// own: a bad one is left out (and returned) while the others are taken.
    /// Among routes for the same host and path the highest priority wins.
    /// Activity and endpoint health of routes that stay are kept. API routes
    /// whose target names a service in `layer.services` are re-pointed at its
    /// task addresses.
    pub async fn replace_discovered(&self, layer: DiscoveredLayer) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        let mut routes = Vec::with_capacity(layer.routes.len());
        for r in layer.routes {
            match validate(&r) {
                Ok(parsed) => routes.push((r, parsed)),
                Err(e) => rejected.push(Rejected {
                    name: r.name,
                    reason: e.to_string(),
                }),
            }
        }
        routes.sort_by(|(a, _), (b, _)| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        self.write(|t| {
            t.awaiting_discovery = false;
            let mut plain = Map::default();
            let mut hosts: imbl::HashMap<Arc<str>, Map> = imbl::HashMap::default();
            let mut winners: HashMap<(Option<String>, Arc<str>), String> = HashMap::new();
            for (r, (key, target, endpoints)) in routes {
                let slot = (r.host.clone(), key.clone());
                if let Some(winner) = winners.get(&slot) {
                    rejected.push(Rejected {
                        reason: format!(
                            "shadowed by {winner} (same host and path, higher priority)"
                        ),
                        name: r.name,
                    });
                    continue;
                }
                winners.insert(slot, r.name.clone());
                let previous = match &r.host {
                    Some(h) => t.hosts.get(h.as_str()).and_then(|m| m.get(&key)),
                    None => t.get(Layer::Discovery, &key),
                };
                let activity = match previous {
                    Some(p) if p.target.as_str() == target.as_str() => p.activity.clone(),
                    _ => Arc::new(Activity::at(now_ms())),
                };
                let balancer = Balancer::new(
                    endpoints,
                    r.policy,
                    r.sticky_cookie,
                    r.health,
                    previous.and_then(|p| p.balancer.as_deref()),
                );
                let fields = format!("\"target\":{}", serde_json::Value::from(target.as_str()));
                let route = Route::new(key.clone(), target, fields.into(), activity)
                    .balanced(Some(Arc::new(balancer)), r.strip_prefix);
                match r.host {
                    Some(h) => {
                        hosts
                            .entry(h.into())
                            .or_default()
                            .insert(key, Arc::new(route));
                    }
                    None => {
                        plain.insert(key, Arc::new(route));
                    }
                }
            }
            let old: Vec<Arc<str>> = t.routes(Layer::Discovery).map(|r| r.key().into()).collect();
            for key in old.iter().filter(|k| !plain.contains_key(&***k)) {
                t.remove(Layer::Discovery, key);
            }
            plain
                .into_iter()
                .for_each(|(_, r)| t.put(Layer::Discovery, r));
            t.hosts = hosts;
            t.set_services(layer.services);
        })
        .await;
        for r in &rejected {
            tracing::warn!(route = %r.name, reason = %r.reason, "discovered route left out");
        }
        rejected
    }

    fn build_route(&self, path: &str, body: &[u8], restoring: bool) -> Result<Route, RouteError> {
        let key = normalize_key(&percent_decode(path).map_err(|_| RouteError::BadPath)?);
        let host = match (self.host_routing, key.as_str()) {
            (true, k) if k != "/" => k[1..].split('/').next(),
            _ => None,
        };
        let data = RouteData::parse(body, host)?;
        let since = match (restoring, data.last_activity) {
            (true, Some(t)) => t,
            _ => now_ms(),
        };
        Ok(Route::new(
            key.into(),
            data.target,
            data.fields,
            Arc::new(Activity::at(since)),
        ))
    }

    async fn write<R>(&self, change: impl FnOnce(&mut RouteTable) -> R) -> R {
        let _writer = self.writer.lock().await;
        let mut next = RouteTable::clone(&self.table.load());
        let result = change(&mut next);
        next.version += 1;
        let version = next.version;
        self.table.store(Arc::new(next));
        self.changed.send_replace(version);
        result
    }
}

/// Stores an API route, pointed at a known service's tasks when it names one.
fn put_api(t: &mut RouteTable, route: Route) {
    let previous = t.get(Layer::Api, route.key()).cloned();
    let route = t.attach_service(route, previous.as_deref());
    t.put(Layer::Api, Arc::new(route));
}

/// A discovered route's key, target and endpoints, parsed.
fn validate(r: &DiscoveredRoute) -> Result<(Arc<str>, Target, Vec<Target>), RouteError> {
    let key = normalize_key(&percent_decode(&r.path).map_err(|_| RouteError::BadPath)?);
    let target = Target::parse(&r.target)?;
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| Target::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((key.into(), target, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn add_replace_remove() {
        let s = RouteStore::new(false);
        s.add_api_route("/user/%E7%A7%80/", br#"{"target":"http://127.0.0.1:1"}"#)
            .await
            .unwrap();
        s.add_api_route("user/秀", br#"{"target":"http://127.0.0.1:2","user":"x"}"#)
            .await
            .unwrap();
        let t = s.load();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.get(Layer::Api, "/user/秀").unwrap().target().as_str(),
            "http://127.0.0.1:2"
        );
        assert!(s.remove_api_route("/user/%E7%A7%80").await.unwrap());
        assert!(!s.remove_api_route("/user/%E7%A7%80").await.unwrap());
        assert_eq!(s.load().len(), 0);
    }

    #[tokio::test]
    async fn a_bad_write_keeps_the_last_good_table() {
        let s = RouteStore::new(false);
        s.add_api_route("/a", br#"{"target":"http://127.0.0.1:1"}"#)
            .await
            .unwrap();
        let version = s.load().version();
        assert!(s.add_api_route("/a", b"{").await.is_err());
        assert!(
            s.restore_api_routes(br#"{"/b":{"target":"http://127.0.0.1:1"},"/c":{}}"#)
                .await
                .is_err()
        );
        assert_eq!(s.load().version(), version);
        assert!(s.load().get(Layer::Api, "/b").is_none());
    }

    #[tokio::test]
    async fn restore_round_trips_render() {
        let s = RouteStore::new(true);
        s.add_api_route(
            "/a.example.org/user/a",
            br#"{"target":"http://127.0.0.1:1","user":"a"}"#,
        )
        .await
        .unwrap();
        let json = s.load().render_api_routes(None);
        assert!(json.contains(r#""host":"a.example.org""#), "{json}");
        let s2 = RouteStore::new(true);
        assert_eq!(s2.restore_api_routes(json.as_bytes()).await.unwrap(), 1);
        assert_eq!(s2.load().render_api_routes(None), json);
    }

    fn discovered(
        name: &str,
        host: Option<&str>,
        path: &str,
        priority: i64,
        eps: &[&str],
    ) -> DiscoveredRoute {
        let endpoints = eps.iter().map(|e| e.to_string()).collect();
        let mut r = DiscoveredRoute::new(name, path, &format!("http://{name}:80"), endpoints);
        r.host = host.map(Into::into);
        r.priority = priority;
        r
    }

    fn layer(routes: Vec<DiscoveredRoute>) -> DiscoveredLayer {
        DiscoveredLayer {
            routes,
            services: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn replacing_the_discovery_layer_keeps_unchanged_activity_and_health() {
        let s = RouteStore::new(false);
        let a = discovered("a", None, "/a", 0, &["http://10.0.0.1:80"]);
        let b = discovered("b", Some("b.example.org"), "/", 0, &["http://10.0.0.2:80"]);
        assert!(
            s.replace_discovered(layer(vec![a.clone(), b]))
                .await
                .is_empty()
        );
        let table = s.load();
        let before = table.get(Layer::Discovery, "/a").unwrap().clone();
        before.balancer().unwrap().backends()[0].set_healthy(false);
        assert_eq!(table.lookup_host("b.example.org", "/x").unwrap().key(), "/");
        s.replace_discovered(layer(vec![a])).await;
        let table = s.load();
        let after = table.get(Layer::Discovery, "/a").unwrap();
        assert!(Arc::ptr_eq(&before.activity, &after.activity));
        assert!(!after.balancer().unwrap().backends()[0].healthy());
        assert!(!table.has_host_routes());
        assert_eq!(table.routes(Layer::Api).count(), 0);
    }

    #[tokio::test]
    async fn bad_or_shadowed_discovered_routes_are_left_out_alone() {
        let s = RouteStore::new(false);
        let rejected = s
            .replace_discovered(layer(vec![
                discovered("low", None, "/x", 1, &["http://10.0.0.1:80"]),
                discovered("high", None, "/x", 5, &["http://10.0.0.2:80"]),
                discovered("bad", None, "/y", 0, &["nope"]),
                discovered("ok", None, "/z", 0, &["http://10.0.0.3:80"]),
            ]))
            .await;
        let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["bad", "low"]);
        let table = s.load();
        let x = table.lookup("/x").unwrap().balancer().unwrap();
        assert_eq!(x.backends()[0].url(), "http://10.0.0.2:80");
        assert!(table.lookup("/z").is_some());
        assert!(table.lookup("/y").is_none());
    }

    #[tokio::test]
    async fn api_targets_naming_a_service_go_to_its_tasks() {
        let s = RouteStore::new(false);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        s.add_api_route("/user/alice", br#"{"target":"http://jupyter-alice:8888"}"#)
            .await
            .unwrap();
        assert!(s.load().lookup("/user/alice").unwrap().balancer().is_none());
        let services = |ips: &[&str]| DiscoveredLayer {
            routes: vec![],
            services: [(
                "jupyter-alice".to_owned(),
                ips.iter().map(|i| ip(i)).collect(),
            )]
            .into(),
        };
        s.replace_discovered(services(&["10.0.1.5"])).await;
        let table = s.load();
        let route = table.lookup("/user/alice/api").unwrap();
        assert_eq!(
            route.target().as_str(),
            "http://jupyter-alice:8888",
            "echoed as sent"
        );
        assert_eq!(
            route.balancer().unwrap().backends()[0].url(),
            "http://10.0.1.5:8888"
        );
        // A route added later is pointed at the tasks as well.
        s.add_api_route(
            "/user/alice/lab",
            br#"{"target":"http://jupyter-alice:8888"}"#,
        )
        .await
        .unwrap();
        assert!(
            s.load()
                .lookup("/user/alice/lab")
                .unwrap()
                .balancer()
                .is_some()
        );
        s.replace_discovered(DiscoveredLayer::default()).await;
        assert!(
            s.load().lookup("/user/alice").unwrap().balancer().is_none(),
            "gone: DNS again"
        );
    }
}
