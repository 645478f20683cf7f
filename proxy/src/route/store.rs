//! The route store: one writer at a time builds the next table from the
//! current one and publishes it; readers `load()` without locking.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::{Mutex, watch};

use super::data::RouteData;
use super::key::{normalize_key, percent_decode};
use super::table::{Layer, Route, RouteTable};
use crate::clock::{Activity, now_ms};
use crate::error::RouteError;
use crate::target::Target;

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
        self.write(|t| t.put(Layer::Api, route)).await;
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
        self.write(|t| routes.into_iter().for_each(|r| t.put(Layer::Api, r)))
            .await;
        Ok(n)
    }

    /// Replaces a whole layer (for discovery): `routes` are key and target
    /// pairs. Activity of routes whose key and target are unchanged is kept.
    pub async fn replace_layer(&self, layer: Layer, routes: Vec<(String, Target)>) {
        self.write(|t| {
            let old: Vec<Arc<str>> = t.routes(layer).map(|r| r.key().into()).collect();
            let mut fresh = Vec::with_capacity(routes.len());
            for (key, target) in routes {
                let key: Arc<str> = normalize_key(&key).into();
                let activity = match t.get(layer, &key) {
                    Some(r) if r.target.as_str() == target.as_str() => r.activity.clone(),
                    _ => Arc::new(Activity::at(now_ms())),
                };
                let fields = format!("\"target\":{}", serde_json::Value::from(target.as_str()));
                fresh.push(Arc::new(Route::new(key, target, fields.into(), activity)));
            }
            let keep: std::collections::HashSet<&str> = fresh.iter().map(|r| r.key()).collect();
            for key in old.iter().filter(|k| !keep.contains(&***k)) {
                t.remove(layer, key);
            }
            fresh.into_iter().for_each(|r| t.put(layer, r));
        })
        .await;
    }

    fn build_route(
        &self,
        path: &str,
        body: &[u8],
        restoring: bool,
    ) -> Result<Arc<Route>, RouteError> {
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
        Ok(Arc::new(Route::new(
            key.into(),
            data.target,
            data.fields,
            Arc::new(Activity::at(since)),
        )))
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

    #[tokio::test]
    async fn replacing_a_layer_keeps_unchanged_activity() {
        let s = RouteStore::new(false);
        let t = |u: &str| Target::parse(u).unwrap();
        s.replace_layer(
            Layer::Discovery,
            vec![
                ("/a".into(), t("http://h:1")),
                ("/b".into(), t("http://h:2")),
            ],
        )
        .await;
        let before = s
            .load()
            .get(Layer::Discovery, "/a")
            .unwrap()
            .activity
            .clone();
        s.replace_layer(Layer::Discovery, vec![("/a".into(), t("http://h:1"))])
            .await;
        let table = s.load();
        assert!(Arc::ptr_eq(
            &before,
            &table.get(Layer::Discovery, "/a").unwrap().activity
        ));
        assert!(table.get(Layer::Discovery, "/b").is_none());
        assert_eq!(table.routes(Layer::Api).count(), 0);
    }
}
