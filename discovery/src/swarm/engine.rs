//! The engine calls the swarm source makes, through bollard, each counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{EventMessageTypeEnum, Service};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, InspectNetworkOptionsBuilder,
    ListServicesOptions, ListTasksOptionsBuilder,
};
use futures_util::{Stream, StreamExt as _};

use super::build::{Listed, ObservedService, TaskEndpoint};
use crate::DiscoveryError;

/// Request timeout for ordinary calls (the event stream is not cut by it).
const TIMEOUT_SECS: u64 = 30;

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A service changed: read the service list again.
    Service,
    /// A container started or stopped here: read the task addresses, and
    /// which of its service's tasks still run (the swarm service's name).
    Container(Option<String>),
}

/// A connected, version-negotiated engine client.
pub(crate) struct Engine {
    docker: Docker,
    /// Calls made, across reconnections (the source keeps the counter).
    calls: Arc<AtomicU64>,
}

impl Engine {
    /// Negotiates the API version with the engine `docker` (engine 20.10
    /// speaks 1.41; bollard defaults higher).
    pub(crate) async fn connect(
        docker: Docker,
        calls: Arc<AtomicU64>,
    ) -> Result<Self, DiscoveryError> {
        let docker = docker.with_timeout(Duration::from_secs(TIMEOUT_SECS));
        calls.fetch_add(1, Ordering::Relaxed);
        let docker = docker.negotiate_version().await?;
        Ok(Self { docker, calls })
    }

    /// The negotiated API version.
    pub(crate) fn version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// API calls made so far, by this source.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The swarm-scoped networks to reach services on, as (ID, name):
    /// `wanted` when given, else those of container `me`.
    pub(crate) async fn shared_networks(
        &self,
        wanted: &[String],
        me: Option<&str>,
    ) -> Result<Vec<(String, String)>, DiscoveryError> {
        let candidates: Vec<String> = if !wanted.is_empty() {
            wanted.to_vec()
        } else {
            let me = me.ok_or_else(|| {
                DiscoveryError::Networks("not in a container and no --swarm-network given".into())
            })?;
            self.count();
            let c = self
                .docker
                .inspect_container(me, None::<InspectContainerOptions>)
                .await
                .map_err(|e| {
                    DiscoveryError::Networks(format!("cannot inspect own container {me:?}: {e}"))
                })?;
            c.network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_values()
                .filter_map(|e| e.network_id)
                .collect()
        };
        let mut found = Vec::new();
        for net in candidates {
            self.count();
            let options = InspectNetworkOptionsBuilder::new().build();
            let n = self.docker.inspect_network(&net, Some(options)).await;
            match n {
                Ok(n) if n.scope.as_deref() == Some("swarm") && n.ingress != Some(true) => {
                    found.push((n.id.unwrap_or_default(), n.name.unwrap_or_default()));
                }
                Ok(_) => {}
                Err(e) if !wanted.is_empty() => {
                    return Err(DiscoveryError::Networks(format!("network {net:?}: {e}")));
                }
                Err(_) => {}
            }
        }
        if found.is_empty() {
            return Err(DiscoveryError::Networks(
                "hubgate is on no swarm overlay network; attach it to the hub's network or pass --swarm-network".into(),
            ));
        }
        Ok(found)
    }

    /// Every service, reduced to what discovery reads.
    pub(crate) async fn services(&self) -> Result<Vec<ObservedService>, DiscoveryError> {
        self.count();
        let services = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await?;
        Ok(services.into_iter().filter_map(observe).collect())
    }

    /// Each network's task endpoints, from a verbose swarm-scope inspect.
    pub(crate) async fn networks(
        &self,
        networks: &[(String, String)],
    ) -> Result<Vec<Listed>, DiscoveryError> {
        let mut out = Vec::with_capacity(networks.len());
        for (id, _) in networks {
            self.count();
            let options = InspectNetworkOptionsBuilder::new()
                .verbose(true)
                .scope("swarm")
                .build();
            let n = self.docker.inspect_network(id, Some(options)).await?;
            out.push(task_endpoints(n.services.unwrap_or_default()));
        }
        Ok(out)
    }

    /// The tasks swarm wants running, by service ID: of one service, or of
    /// all (one call either way).
    pub(crate) async fn running_tasks(
        &self,
        service: Option<&str>,
    ) -> Result<HashMap<String, HashSet<String>>, DiscoveryError> {
        self.count();
        let mut filters: HashMap<&str, Vec<&str>> =
            HashMap::from([("desired-state", vec!["running"])]);
        if let Some(s) = service {
            filters.insert("service", vec![s]);
        }
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for t in self.docker.list_tasks(Some(options)).await? {
            if let (Some(service), Some(id)) = (t.service_id, t.id) {
                out.entry(service).or_default().insert(id);
            }
        }
        Ok(out)
    }

    /// Service and container events, as what each asks for.
    pub(crate) fn events(&self) -> impl Stream<Item = Result<Kind, DiscoveryError>> + use<> {
        self.count();
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([
            ("type", vec!["service", "container"]),
            (
                "event",
                vec![
                    "create",
                    "update",
                    "remove",
                    "start",
                    "die",
                    "health_status",
                    "destroy",
                ],
            ),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker.events(Some(options)).map(|e| {
            let e = e?;
            Ok(match e.typ {
                Some(EventMessageTypeEnum::SERVICE) => Kind::Service,
                _ => Kind::Container(
                    e.actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut a| a.remove("com.docker.swarm.service.name")),
                ),
            })
        })
    }
}

fn observe(s: Service) -> Option<ObservedService> {
    let spec = s.spec?;
    let task = spec.task_template.unwrap_or_default();
    let container = task.container_spec.unwrap_or_default();
    let networks = task
        .networks
        .into_iter()
        .flatten()
        .chain(spec.networks.into_iter().flatten())
        .filter_map(|n| n.target)
        .collect();
    let vips = s
        .endpoint
        .and_then(|e| e.virtual_ips)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| {
            let ip = v.addr?.split('/').next()?.parse().ok()?;
            Some((v.network_id?, ip))
        })
        .collect();
    Some(ObservedService {
        id: s.id.unwrap_or_default(),
        name: spec.name?,
        labels: spec.labels.unwrap_or_default(),
        env: container.env.unwrap_or_default(),
        networks,
        vips,
    })
}

/// `Services` of a verbose network inspect:
/// `{name: {Tasks: [{Name: "<service>.<slot>.<task id>", EndpointIP}]}}`.
fn task_endpoints(services: HashMap<String, serde_json::Value>) -> Listed {
    services
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, info)| {
            let endpoints = info
                .get("Tasks")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    let task = t.get("Name")?.as_str()?.rsplit('.').next()?.to_owned();
                    let ip = t.get("EndpointIP")?.as_str()?.parse().ok()?;
                    Some(TaskEndpoint { task, ip })
                })
                .collect();
            (name, endpoints)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_task_addresses_from_a_verbose_inspect() {
        let raw: HashMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"web": {"VIP": "<nil>", "Tasks": [
                    {"Name": "web.1.x", "EndpointIP": "10.0.1.5"},
                    {"Name": "web.2.y", "EndpointIP": "10.0.1.6"},
                    {"Name": "web.3.z", "EndpointIP": "garbage"}]},
                "": {"Tasks": [{"EndpointIP": "10.0.1.9"}]},
                "idle": {"VIP": "10.0.1.2"}}"#,
        )
        .unwrap();
        let t = task_endpoints(raw);
        assert_eq!(t["web"].len(), 2);
        assert_eq!(t["web"][0].task, "x");
        assert!(t["idle"].is_empty());
        assert!(!t.contains_key(""));
    }
}
