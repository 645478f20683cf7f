//! The immutable route table: what one `ArcSwap` snapshot holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::data;
use super::key::{lookup_form, prefixes, segment_count};
use crate::clock::Activity;
use crate::upstream::balance::Balancer;
use crate::upstream::target::{Endpoint, Target};

/// Where a route came from. Sources are layered: when two layers hold the
/// same key, the one listed first here wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Routes written through the REST API (JupyterHub), the routes file and
    /// `--default-target`. The only layer the API reports.
    Api,
    /// Routes found by service discovery; hidden from the API so that
    /// JupyterHub's `check_routes` never deletes them.
    Discovery,
}

impl Layer {
    /// Every layer, highest precedence first.
    pub const ALL: [Layer; 2] = [Layer::Api, Layer::Discovery];

    fn index(self) -> usize {
        self as usize
    }
}

/// One route: a key, where it goes, what the API reports for it, and its
/// activity clock.
#[derive(Debug)]
pub struct Route {
    key: Arc<str>,
    pub(crate) target: Target,
    fields: Box<str>,
    pub(crate) activity: Arc<Activity>,
    /// Whole path segments in the key, host routing's host included.
    pub(crate) segments: usize,
    /// Several endpoints to spread requests over (discovered services, and
    /// API targets naming a known swarm service); `None` sends everything
    /// to `target`.
    pub(crate) balancer: Option<Arc<Balancer>>,
    /// Strip the matched prefix for this route whatever `--no-include-prefix`
    /// says (a discovery label).
    pub(crate) strip_prefix: bool,
}

impl Route {
    pub(crate) fn new(
        key: Arc<str>,
        target: Target,
        fields: Box<str>,
        activity: Arc<Activity>,
    ) -> Self {
        let segments = segment_count(&key);
        Self {
            key,
            target,
            fields,
            activity,
            segments,
            balancer: None,
            strip_prefix: false,
        }
    }

    /// The same route spread over `balancer`'s endpoints.
    pub(crate) fn balanced(mut self, balancer: Option<Arc<Balancer>>, strip_prefix: bool) -> Self {
        self.balancer = balancer;
        self.strip_prefix = strip_prefix;
        self
    }

    /// A copy that goes to `balancer` instead (same key, data and activity).
    fn rebalanced(&self, balancer: Option<Arc<Balancer>>) -> Self {
        Self {
            key: self.key.clone(),
            target: self.target.clone(),
            fields: self.fields.clone(),
            activity: self.activity.clone(),
            segments: self.segments,
            balancer,
            strip_prefix: self.strip_prefix,
        }
    }

    /// The normalised, unescaped key, e.g. `/user/alice`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The upstream target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The endpoints requests are spread over, when there are several.
    pub fn balancer(&self) -> Option<&Arc<Balancer>> {
        self.balancer.as_ref()
    }

    /// Milliseconds since the epoch of the last activity.
    pub fn last_activity_ms(&self) -> u64 {
        self.activity.get()
    }

    /// Appends the route's JSON (stored data plus `last_activity`) to `out`.
    pub fn render_json(&self, out: &mut String) {
        data::render(&self.fields, self.activity.get(), out);
    }
}

pub(crate) type Map = imbl::HashMap<Arc<str>, Arc<Route>>;

/// One immutable version of the route table. Cloning it is cheap (the maps
/// share structure), which is how the store builds the next version.
#[derive(Clone)]
pub struct RouteTable {
    /// What requests are routed by: every layer merged by precedence.
    pub(crate) merged: Map,
    pub(crate) layers: [Map; Layer::ALL.len()],
    pub(crate) version: u64,
    /// How many merged routes have each segment count (the last slot counts
    /// all deeper ones), so a lookup probes only depths some route has.
    depths: [u32; DEPTHS],
    /// Discovered routes with a host rule, by lower-case host: looked up
    /// before `merged` (a host rule is more specific than any path).
    pub(crate) hosts: imbl::HashMap<Arc<str>, Map>,
    /// Task addresses of the swarm services discovery knows, by service
    /// name: an API route whose target names one goes to these addresses.
    pub(crate) services: Arc<HashMap<String, Vec<IpAddr>>>,
    /// Route discovery is on and has not delivered its first layer yet: a
    /// request no route matches may be one a discovered route will serve
    /// (a replica just restarted), so it is told to retry, not "not found".
    pub(crate) awaiting_discovery: bool,
}

const DEPTHS: usize = 64;

fn depth_slot(segments: usize) -> usize {
    segments.min(DEPTHS - 1)
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            merged: Map::default(),
            layers: Default::default(),
            version: 0,
            depths: [0; DEPTHS],
            hosts: imbl::HashMap::default(),
            services: Arc::default(),
            awaiting_discovery: false,
        }
    }
}

impl RouteTable {
    /// The route for a request: the longest key made of whole segments of
    /// `decoded_path` (with host routing, of `/<host><path>`).
    pub(crate) fn lookup(&self, decoded_path: &str) -> Option<&Arc<Route>> {
        let form = lookup_form(decoded_path);
        // JupyterHub's routes sit at depths 0-2 while kernel and file paths
        // run deeper: skip the depths no route has (no hash, no probe).
        let mut depth = segment_count(form);
        prefixes(form).find_map(|candidate| {
            let d = depth;
            depth = depth.saturating_sub(1);
            if self.depths[depth_slot(d)] == 0 {
                return None;
            }
            self.merged.get(candidate)
        })
    }

    /// Whether any route has a host rule (else [`Self::lookup_host`] is moot).
    pub(crate) fn has_host_routes(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The route for a request to `host` (lower case, no port) among the
    /// routes with a host rule: the longest whole-segment prefix.
    pub(crate) fn lookup_host(&self, host: &str, decoded_path: &str) -> Option<&Arc<Route>> {
        let routes = self.hosts.get(host)?;
        prefixes(lookup_form(decoded_path)).find_map(|candidate| routes.get(candidate))
    }

    /// Every discovered route with a host rule, as (host, route).
    pub fn host_routes(&self) -> impl Iterator<Item = (&str, &Arc<Route>)> {
        self.hosts
            .iter()
            .flat_map(|(h, m)| m.values().map(move |r| (&**h, r)))
    }

    /// The balancers of discovered routes (for the health checker: only
    /// discovery asks for health checks, so the API's routes, up to 100,000
    /// of them, are not walked).
    pub(crate) fn discovered_balancers(&self) -> Vec<Arc<Balancer>> {
        self.routes(Layer::Discovery)
            .chain(self.hosts.values().flat_map(|m| m.values()))
            .filter_map(|r| r.balancer.clone())
            .collect()
    }

    /// The route stored under `key` in `layer` (normalised key).
    pub fn get(&self, layer: Layer, key: &str) -> Option<&Arc<Route>> {
        self.layers[layer.index()].get(key)
    }

    /// The routes of one layer, in no particular order.
    pub fn routes(&self, layer: Layer) -> impl Iterator<Item = &Arc<Route>> {
        self.layers[layer.index()].values()
    }

    /// Number of routes requests can reach.
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    /// True when no route exists.
    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }

    /// Monotonic version, bumped by every write.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The API layer as CHP's `GET /api/routes` renders it: a JSON object of
    /// key to data, keeping only routes idle since before `inactive_since`
    /// (ms) when given. The routes file uses the same form.
    pub fn render_api_routes(&self, inactive_since: Option<u64>) -> String {
        let mut out = String::with_capacity(2 + self.layers[0].len() * 160);
        out.push('{');
        let mut first = true;
        for route in self.routes(Layer::Api) {
            if inactive_since.is_some_and(|t| route.last_activity_ms() >= t) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::Value::from(route.key()).to_string());
            out.push(':');
            route.render_json(&mut out);
        }
        out.push('}');
        out
    }

    /// `route` as it should be stored: an API route whose `http` target names
    /// a swarm service discovery knows goes to that service's task addresses
    /// (port from the target), never through the service's virtual IP.
    pub(crate) fn attach_service(&self, route: Route, previous: Option<&Route>) -> Route {
        let balancer = self.service_balancer(&route.target, previous);
        if balancer.is_none() && route.balancer.is_none() {
            return route;
        }
        route.rebalanced(balancer)
    }

    /// The task addresses of the swarm service `target`'s host names, as
    /// `http` targets with `target`'s port (what to connect to: the path
    /// stays the route's); `None` when the host is not a service discovery
    /// knows. Empty: a service with no task.
    pub(crate) fn service_targets(&self, target: &Target) -> Option<Vec<Target>> {
        let Endpoint::Tcp { host, port } = &target.endpoint else {
            return None;
        };
        let addrs = self.services.get(&**host)?;
        Some(
            addrs
                .iter()
                .filter_map(|ip| {
                    let addr = std::net::SocketAddr::new(*ip, *port);
                    Target::parse(&format!("http://{addr}")).ok()
                })
                .collect(),
        )
    }

    fn service_balancer(&self, target: &Target, previous: Option<&Route>) -> Option<Arc<Balancer>> {
        let targets = self.service_targets(target)?;
        let previous = previous.and_then(|p| p.balancer.as_deref());
        Some(Arc::new(Balancer::new(
            targets,
            Default::default(),
            None,
            None,
            previous,
        )))
    }

    /// Replaces the service map and re-points the API routes whose target
    /// names a service that appeared, changed or went away.
    pub(crate) fn set_services(&mut self, services: HashMap<String, Vec<IpAddr>>) {
        let old = std::mem::replace(&mut self.services, Arc::new(services));
        let touched: Vec<Arc<Route>> = self
            .routes(Layer::Api)
            .filter(|r| match &r.target.endpoint {
                Endpoint::Tcp { host, .. } => old.get(&**host) != self.services.get(&**host),
                _ => false,
            })
            .cloned()
            .collect();
        for route in touched {
            let balancer = self.service_balancer(&route.target, Some(&route));
            self.put(Layer::Api, Arc::new(route.rebalanced(balancer)));
        }
    }

    pub(crate) fn put(&mut self, layer: Layer, route: Arc<Route>) {
        let key = route.key.clone();
        self.layers[layer.index()].insert(key.clone(), route);
        self.resolve(key);
    }

    pub(crate) fn remove(&mut self, layer: Layer, key: &str) -> Option<Arc<Route>> {
        let removed = self.layers[layer.index()].remove(key)?;
        self.resolve(removed.key.clone());
        Some(removed)
    }

    /// Recomputes `merged[key]` from the layers, by precedence.
    fn resolve(&mut self, key: Arc<str>) {
        match Layer::ALL
            .iter()
            .find_map(|l| self.layers[l.index()].get(&key))
        {
            Some(route) => {
                let (route, slot) = (route.clone(), depth_slot(route.segments));
                if self.merged.insert(key, route).is_none() {
                    self.depths[slot] += 1;
                }
            }
            None => {
                if let Some(old) = self.merged.remove(&key) {
                    self.depths[depth_slot(old.segments)] -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str, target: &str) -> Arc<Route> {
        let fields = format!("\"target\":\"{target}\"").into_boxed_str();
        Arc::new(Route::new(
            key.into(),
            Target::parse(target).unwrap(),
            fields,
            Arc::new(Activity::at(0)),
        ))
    }

    fn table(keys: &[&str]) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, k) in keys.iter().enumerate() {
            t.put(
                Layer::Api,
                route(k, &format!("http://127.0.0.1:{}", 1000 + i)),
            );
        }
        t
    }

    fn hit(t: &RouteTable, path: &str) -> Option<String> {
        t.lookup(path).map(|r| r.key().to_owned())
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = table(&["/", "/b/c", "/b/c/d", "/user/alice"]);
        assert_eq!(hit(&t, "/b/c/dword").as_deref(), Some("/b/c"));
        assert_eq!(hit(&t, "/b/c/d/e").as_deref(), Some("/b/c/d"));
        assert_eq!(hit(&t, "/b/c/").as_deref(), Some("/b/c"));
        assert_eq!(hit(&t, "/b").as_deref(), Some("/"));
        assert_eq!(hit(&t, "/user/alice2").as_deref(), Some("/"));
        assert_eq!(
            hit(&t, "/User/alice").as_deref(),
            Some("/"),
            "case-sensitive"
        );
    }

    #[test]
    fn only_depths_with_routes_are_probed_and_the_counts_follow_removals() {
        let deep = format!("/{}", vec!["s"; 70].join("/"));
        let mut t = table(&["/", "/user/alice", &deep]);
        assert_eq!(t.depths[0], 1);
        assert_eq!(t.depths[2], 1);
        assert_eq!(t.depths[DEPTHS - 1], 1, "deeper keys share the last slot");
        assert_eq!(
            hit(&t, "/user/alice/api/kernels/k1/channels").as_deref(),
            Some("/user/alice")
        );
        assert_eq!(hit(&t, &format!("{deep}/x")).as_deref(), Some(&*deep));
        assert_eq!(
            hit(&t, &format!("/{}", vec!["s"; 69].join("/"))).as_deref(),
            Some("/")
        );
        // Replacing a route keeps one count; removing it drops the count.
        t.put(Layer::Api, route("/user/alice", "http://127.0.0.1:9"));
        assert_eq!(t.depths[2], 1);
        t.remove(Layer::Api, "/user/alice");
        assert_eq!(t.depths[2], 0);
        assert_eq!(hit(&t, "/user/alice/api").as_deref(), Some("/"));
    }

    #[test]
    fn no_default_means_no_match() {
        let t = table(&["/user/alice"]);
        assert_eq!(hit(&t, "/user/bob"), None);
        assert_eq!(hit(&t, "/"), None);
    }

    #[test]
    fn higher_layer_wins_and_lower_layer_returns_on_removal() {
        let mut t = RouteTable::default();
        t.put(Layer::Discovery, route("/svc", "http://127.0.0.1:1"));
        t.put(Layer::Api, route("/svc", "http://127.0.0.1:2"));
        assert_eq!(
            t.lookup("/svc/x").unwrap().target().as_str(),
            "http://127.0.0.1:2"
        );
        t.remove(Layer::Api, "/svc");
        assert_eq!(
            t.lookup("/svc/x").unwrap().target().as_str(),
            "http://127.0.0.1:1"
        );
        assert_eq!(t.routes(Layer::Api).count(), 0);
        assert!(t.render_api_routes(None) == "{}");
    }

    #[test]
    fn hundred_thousand_routes() {
        let mut t = RouteTable::default();
        for i in 0..100_000 {
            t.put(
                Layer::Api,
                route(&format!("/user/u{i}"), "http://127.0.0.1:1"),
            );
        }
        assert_eq!(t.len(), 100_000);
        assert_eq!(
            hit(&t, "/user/u99999/api/kernels").as_deref(),
            Some("/user/u99999")
        );
    }
}
