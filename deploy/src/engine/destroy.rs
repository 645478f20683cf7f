//! `destroy`: remove what `apply` made (and the servers the hub spawned),
//! keeping the volumes that hold data unless asked to purge them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
};

use super::{Engine, Progress, deployment_filter};
use crate::DeployError;
use crate::model::Role;
use crate::model::SPAWNED_LABEL;
use crate::volumes::Keep;

/// What `destroy` removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub services: Vec<String>,
    pub configs: Vec<String>,
    pub secrets: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// Data volumes left in place (no `--purge`).
    pub kept_volumes: Vec<String>,
}

impl Engine {
    /// Removes deployment `name`'s objects from the swarm, volumes on
    /// every node by a job of `tool_image` (hubgate's), keeping data
    /// volumes unless `purge`.
    pub async fn destroy(
        &self,
        name: &str,
        tool_image: &str,
        purge: bool,
        progress: Progress<'_>,
    ) -> Result<Removed, DeployError> {
        self.require_manager().await?;
        let mut removed = Removed::default();
        let filter = deployment_filter(name);
        let spawned =
            HashMap::from([("label".to_owned(), vec![format!("{SPAWNED_LABEL}={name}")])]);
        for f in [&spawned, &filter] {
            let services = self
                .docker
                .list_services(Some(ListServicesOptionsBuilder::new().filters(f).build()))
                .await
                .map_err(DeployError::engine("list services"))?;
            for s in services.into_iter().filter_map(|s| s.spec?.name) {
                self.remove_service(&s).await?;
                progress(format!("removed service {s}"));
                removed.services.push(s);
            }
        }
        self.wait_containers_gone(&removed.services).await;
        for c in self.config_names(Some(&filter)).await? {
            self.docker
                .delete_config(&c)
                .await
                .map_err(DeployError::engine(format!("remove config {c}")))?;
            progress(format!("removed config {c}"));
            removed.configs.push(c);
        }
        // The deployment's secrets, and its user servers' token secrets.
        let mut secrets = self.secret_names(Some(&filter)).await?;
        secrets.extend(self.secret_names(Some(&spawned)).await?);
        for s in secrets {
            self.docker
                .delete_secret(&s)
                .await
                .map_err(DeployError::engine(format!("remove secret {s}")))?;
            progress(format!("removed secret {s}"));
            removed.secrets.push(s);
        }
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(DeployError::engine("list networks"))?;
        for n in networks.into_iter().filter_map(|n| n.name) {
            self.remove_network_when_free(&n).await?;
            progress(format!("removed network {n}"));
            removed.networks.push(n);
        }
        // Volumes are per node: a job removes them on every node.
        let names = |v: Vec<crate::observed::VolumeSeen>| -> Vec<String> {
            v.into_iter().map(|v| v.name).collect()
        };
        let before = names(self.volumes_of(name, false).await?);
        let keep = Keep {
            roles: if purge {
                vec![]
            } else {
                vec![Role::User, Role::HubData]
            },
            ..Keep::default()
        };
        if purge || !before.is_empty() || !removed.services.is_empty() {
            self.prune_everywhere(name, tool_image, &keep, progress)
                .await?;
        }
        let after = names(self.volumes_of(name, false).await?);
        removed.volumes = before.into_iter().filter(|v| !after.contains(v)).collect();
        removed.kept_volumes = after;
        Ok(removed)
    }

    /// Waits (up to a minute) until no container of `services` is left on
    /// this engine: their volumes are in use until then.
    async fn wait_containers_gone(&self, services: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in services {
            let filters = HashMap::from([(
                "label".to_owned(),
                vec![format!("com.docker.swarm.service.name={s}")],
            )]);
            while Instant::now() < deadline {
                let options = ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build();
                match self.docker.list_containers(Some(options)).await {
                    Ok(list) if !list.is_empty() => {
                        tokio::time::sleep(Duration::from_millis(300)).await
                    }
                    _ => break,
                }
            }
        }
    }
}
