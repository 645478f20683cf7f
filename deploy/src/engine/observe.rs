//! Reading a deployment's objects back from the engine.

use std::collections::{HashMap, HashSet};

use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListNetworksOptionsBuilder, ListSecretsOptions,
    ListSecretsOptionsBuilder, ListServicesOptions, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder,
};

use super::service_spec::from_spec;
use super::{Engine, deployment_filter};
use crate::DeployError;
use crate::desired::Desired;
use crate::diff::{Plan, diff};
use crate::model::{DEPLOY_LABEL, ROLE_LABEL, Role, SPAWNED_LABEL};
use crate::observed::{HubDataSeen, NetworkSeen, Observed};

impl Engine {
    /// Network IDs to names, for every network.
    pub(crate) async fn network_names(&self) -> Result<HashMap<String, String>, DeployError> {
        let nets = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(DeployError::engine("list networks"))?;
        let mut names: HashMap<String, String> = nets
            .into_iter()
            .filter_map(|n| Some((n.id?, n.name?)))
            .collect();
        // A service on the host network names it by the swarm's own ID
        // for it, which the engine's list does not show.
        let options = bollard::query_parameters::InspectNetworkOptionsBuilder::new()
            .scope("swarm")
            .build();
        if let Ok(host) = self.docker.inspect_network("host", Some(options)).await
            && let Some(id) = host.id
        {
            names.insert(id, "host".to_owned());
        }
        Ok(names)
    }

    /// Config and secret names to IDs.
    pub(crate) async fn blob_ids(&self) -> Result<HashMap<String, String>, DeployError> {
        let mut ids = HashMap::new();
        let configs = self
            .docker
            .list_configs(None::<bollard::query_parameters::ListConfigsOptions>)
            .await
            .map_err(DeployError::engine("list configs"))?;
        for c in configs {
            if let (Some(id), Some(name)) = (c.id, c.spec.and_then(|s| s.name)) {
                ids.insert(name, id);
            }
        }
        let secrets = self
            .docker
            .list_secrets(None::<ListSecretsOptions>)
            .await
            .map_err(DeployError::engine("list secrets"))?;
        for s in secrets {
            if let (Some(id), Some(name)) = (s.id, s.spec.and_then(|s| s.name)) {
                ids.insert(name, id);
            }
        }
        Ok(ids)
    }

    /// The names of the configs `filter` selects (all with none).
    pub(crate) async fn config_names(
        &self,
        filter: Option<&HashMap<String, Vec<String>>>,
    ) -> Result<Vec<String>, DeployError> {
        let options = filter.map(|f| ListConfigsOptionsBuilder::new().filters(f).build());
        let configs = self
            .docker
            .list_configs(options)
            .await
            .map_err(DeployError::engine("list configs"))?;
        Ok(configs.into_iter().filter_map(|c| c.spec?.name).collect())
    }

    /// The names of the secrets `filter` selects (all with none).
    pub(crate) async fn secret_names(
        &self,
        filter: Option<&HashMap<String, Vec<String>>>,
    ) -> Result<Vec<String>, DeployError> {
        let options = filter.map(|f| ListSecretsOptionsBuilder::new().filters(f).build());
        let secrets = self
            .docker
            .list_secrets(options)
            .await
            .map_err(DeployError::engine("list secrets"))?;
        Ok(secrets.into_iter().filter_map(|s| s.spec?.name).collect())
    }

    /// The text of the deployment's newest hub configuration (the one its
    /// hub runs with), if it can be read.
    async fn hub_config_text(&self, filter: &HashMap<String, Vec<String>>) -> Option<String> {
        use base64::Engine as _;
        let options = ListConfigsOptionsBuilder::new().filters(filter).build();
        let configs = self.docker.list_configs(Some(options)).await.ok()?;
        let newest = configs
            .into_iter()
            .filter(|c| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get(ROLE_LABEL))
                    .is_some_and(|r| r == Role::HubConfig.as_str())
            })
            .max_by(|a, b| a.created_at.cmp(&b.created_at))?;
        let data = newest.spec?.data?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        String::from_utf8(bytes).ok()
    }

    /// What `apply` would do: `want` against what the engine has.
    pub async fn plan(&self, want: &Desired) -> Result<Plan, DeployError> {
        Ok(diff(want, &self.observe(want).await?))
    }

    /// What the engine has of deployment `want.name`.
    pub async fn observe(&self, want: &Desired) -> Result<Observed, DeployError> {
        let filter = deployment_filter(&want.name);
        let networks = self.network_names().await?;
        let all_services = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(DeployError::engine("list services"))?;
        let ours = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(DeployError::engine("list networks"))?;
        let services = self
            .docker
            .list_services(Some(
                ListServicesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(DeployError::engine("list services"))?;
        let in_use = servers_configs(&all_services, &want.name);
        Ok(Observed {
            foreign_ports: foreign_ports(&all_services, &want.name),
            network: self.network_seen(want, &all_services).await?,
            old_networks: ours
                .into_iter()
                .filter_map(|n| n.name)
                .filter(|n| *n != want.network.name)
                .collect(),
            configs: self.config_names(Some(&filter)).await?,
            server_configs: in_use,
            hub_config: self.hub_config_text(&filter).await,
            secrets: self.secret_names(Some(&filter)).await?,
            all_secrets: self.secret_names(None).await?.into_iter().collect(),
            services: services
                .iter()
                .filter_map(|s| s.spec.as_ref())
                .map(|spec| from_spec(spec, &networks))
                .collect(),
            // Only unused ones: a volume a running server holds cannot go
            // yet, and planning its removal would make every apply a change.
            volumes: self.volumes_of(&want.name, true).await?,
            hub_data: self.hub_data(&services).await?,
        })
    }

    /// Where a hub of an earlier hubgate keeps its database: the volume it
    /// mounts with the hub-data role, on the node of its latest task.
    async fn hub_data(&self, services: &[Service]) -> Result<Option<HubDataSeen>, DeployError> {
        let hub_data = Role::HubData.as_str();
        let found = services.iter().find_map(|s| {
            let spec = s.spec.as_ref()?;
            let mounts = spec
                .task_template
                .as_ref()?
                .container_spec
                .as_ref()?
                .mounts
                .as_ref()?;
            let volume = mounts.iter().find_map(|m| {
                let labels = m.volume_options.as_ref()?.labels.as_ref()?;
                (labels.get(ROLE_LABEL).map(String::as_str) == Some(hub_data))
                    .then(|| m.source.clone())?
            })?;
            Some((spec.name.clone()?, volume))
        });
        let Some((service, volume)) = found else {
            return Ok(None);
        };
        let filters = HashMap::from([("service".to_owned(), vec![service.clone()])]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(DeployError::engine(format!("list tasks of {service}")))?;
        let latest = tasks
            .into_iter()
            .filter(|t| t.node_id.is_some())
            .max_by_key(|t| t.created_at.clone().unwrap_or_default());
        let node_id = latest.and_then(|t| t.node_id).unwrap_or_default();
        let nodes = self.nodes().await?;
        Ok(Some(HubDataSeen {
            volume,
            node: nodes
                .host_of
                .get(&node_id)
                .cloned()
                .unwrap_or_else(|| node_id.clone()),
            node_ready: nodes.ready.contains(&node_id),
            node_id,
        }))
    }

    /// The network with the file's name, with the services of others
    /// attached to it.
    async fn network_seen(
        &self,
        want: &Desired,
        all_services: &[Service],
    ) -> Result<Option<NetworkSeen>, DeployError> {
        let net_filter = HashMap::from([("name".to_owned(), vec![want.network.name.clone()])]);
        let named = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new()
                    .filters(&net_filter)
                    .build(),
            ))
            .await
            .map_err(DeployError::engine("list networks"))?;
        // `name` filters by substring: keep the exact one.
        let Some(n) = named
            .into_iter()
            .find(|n| n.name.as_deref() == Some(want.network.name.as_str()))
        else {
            return Ok(None);
        };
        let id = n.id.clone().unwrap_or_default();
        let labels = n.labels.unwrap_or_default();
        let foreign_services = all_services
            .iter()
            .filter_map(|s| {
                let spec = s.spec.as_ref()?;
                let nets = spec.task_template.as_ref()?.networks.as_ref()?;
                let attached = nets
                    .iter()
                    .any(|a| a.target.as_deref() == Some(id.as_str()));
                (attached && !is_of(spec, &want.name))
                    .then(|| spec.name.clone().unwrap_or_default())
            })
            .collect();
        Ok(Some(NetworkSeen {
            name: want.network.name.clone(),
            driver: n.driver.unwrap_or_default(),
            attachable: n.attachable.unwrap_or(false),
            subnet: n
                .ipam
                .and_then(|i| i.config)
                .and_then(|c| c.into_iter().find_map(|c| c.subnet)),
            encrypted: n.options.unwrap_or_default().contains_key("encrypted"),
            managed: labels.get(DEPLOY_LABEL) == Some(&want.name),
            foreign_services,
        }))
    }
}

/// Whether a service belongs to deployment `name`.
fn is_of(spec: &ServiceSpec, name: &str) -> bool {
    spec.labels
        .as_ref()
        .and_then(|l| l.get(DEPLOY_LABEL))
        .is_some_and(|d| d == name)
}

/// Ports other deployments' services publish, as (port, service name).
fn foreign_ports(services: &[Service], deployment: &str) -> Vec<(u16, String)> {
    services
        .iter()
        .filter(|s| s.spec.as_ref().is_some_and(|spec| !is_of(spec, deployment)))
        .flat_map(|s| {
            let name = s.spec.as_ref().and_then(|s| s.name.clone());
            let ports = s.endpoint.as_ref().and_then(|e| e.ports.clone());
            ports
                .into_iter()
                .flatten()
                .filter_map(move |p| Some((u16::try_from(p.published_port?).ok()?, name.clone()?)))
        })
        .collect()
}

/// The configs the deployment's user servers (services the hub spawned)
/// mount, by name.
fn servers_configs(services: &[Service], deployment: &str) -> HashSet<String> {
    services
        .iter()
        .filter_map(|s| s.spec.as_ref())
        .filter(|spec| {
            spec.labels
                .as_ref()
                .and_then(|l| l.get(SPAWNED_LABEL))
                .is_some_and(|v| v == deployment)
        })
        .filter_map(|spec| {
            spec.task_template
                .as_ref()?
                .container_spec
                .as_ref()?
                .configs
                .as_ref()
        })
        .flatten()
        .filter_map(|c| c.config_name.clone())
        .collect()
}
