//! The immutable route table: what one `ArcSwap` snapshot holds.

use std::sync::Arc;

use super::data;
use super::key::{lookup_form, prefixes, segment_count};
use crate::clock::Activity;
use crate::target::Target;

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
