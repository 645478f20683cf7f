//! Running a plan, then waiting until the services run what it asked for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::models::{ConfigSpec, Ipam, IpamConfig, NetworkCreateRequest, SecretSpec};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, InspectServiceOptions, UpdateServiceOptions,
};
use futures_util::StreamExt as _;

use super::Engine;
use super::service_spec::to_spec;
use crate::DeployError;
use crate::desired::Desired;
use crate::diff::{Plan, Step};
use crate::model::{BlobWant, DEPLOY_LABEL, NetworkWant, ROLE_LABEL, SecretData, ServiceWant};

/// Whether the engine refused to remove an object a service still uses.
fn is_in_use(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { message, .. } if message.contains("in use"))
}

/// Where `apply` reports what it does, a line at a time.
pub type Progress<'a> = &'a mut dyn FnMut(String);

pub(crate) fn is_status(e: &bollard::errors::Error, code: u16) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code == code)
}

impl Engine {
    /// Checks every image the deployment's services run is on this engine,
    /// pulling it when a registry has it.
    pub async fn check_images(
        &self,
        want: &Desired,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        for s in &want.services {
            if self.docker.inspect_image(&s.image).await.is_ok() {
                continue;
            }
            progress(format!("pulling {}", s.image));
            let options = CreateImageOptionsBuilder::new()
                .from_image(&s.image)
                .build();
            let mut pull = self.docker.create_image(Some(options), None, None);
            let mut reason = None;
            let deadline = tokio::time::sleep(Duration::from_secs(300));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    item = pull.next() => match item {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => { reason = Some(e.to_string()); break; }
                        None => break,
                    },
                    () = &mut deadline => { reason = Some("the pull took over 300 s".into()); break; }
                }
            }
            if let Some(reason) = reason {
                return Err(DeployError::MissingImage {
                    image: s.image.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Runs `plan`'s steps in order. Refuses a plan with problems.
    pub async fn apply(
        &self,
        want: &Desired,
        plan: &Plan,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        if !plan.problems.is_empty() {
            return Err(DeployError::Refused(plan.problems.clone()));
        }
        let mut ids = self.blob_ids().await?;
        for step in &plan.steps {
            match step {
                Step::CreateNetwork(n) => {
                    self.create_network(&want.name, n).await?;
                    progress(format!("created network {}", n.name));
                }
                Step::ReplaceNetwork { want: n, .. } => {
                    for s in &want.services {
                        self.remove_service(&s.name).await?;
                    }
                    self.remove_network_when_free(&n.name).await?;
                    self.create_network(&want.name, n).await?;
                    progress(format!("made network {} anew", n.name));
                }
                Step::CreateConfig(c) => {
                    let id = self.create_config(&want.name, c).await?;
                    ids.insert(c.name.clone(), id);
                    progress(format!("created config {}", c.name));
                }
                Step::CreateSecret(s) => {
                    let id = self.create_secret(&want.name, s).await?;
                    ids.insert(s.name.clone(), id);
                    progress(format!("created secret {}", s.name));
                }
                Step::CreateService(s) => {
                    self.docker
                        .create_service(to_spec(s, &ids), None)
                        .await
                        .map_err(DeployError::engine(format!("create service {}", s.name)))?;
                    progress(format!("created service {}", s.name));
                }
                Step::UpdateService { want: s, changes } => {
                    self.update_service(s, &ids).await?;
                    let fields: Vec<&str> = changes.iter().map(|c| c.field).collect();
                    progress(format!(
                        "updated service {} ({})",
                        s.name,
                        fields.join(", ")
                    ));
                }
                Step::ReplaceService { want: s, .. } => {
                    self.remove_service(&s.name).await?;
                    self.docker
                        .create_service(to_spec(s, &ids), None)
                        .await
                        .map_err(DeployError::engine(format!("create service {}", s.name)))?;
                    progress(format!("made service {} anew", s.name));
                }
                Step::RemoveService(name) => {
                    self.remove_service(name).await?;
                    progress(format!("removed service {name}"));
                }
                Step::RemoveConfig(name) => match self.docker.delete_config(name).await {
                    Ok(()) => progress(format!("removed config {name}")),
                    // Running user servers keep the configuration they
                    // started with.
                    Err(e) if is_in_use(&e) => progress(format!(
                        "config {name} is in use by running servers: kept until they stop (apply again then)"
                    )),
                    Err(e) => return Err(DeployError::engine(format!("remove config {name}"))(e)),
                },
                Step::RemoveSecret(name) => {
                    self.docker
                        .delete_secret(name)
                        .await
                        .map_err(DeployError::engine(format!("remove secret {name}")))?;
                    progress(format!("removed secret {name}"));
                }
                Step::MigrateHubData(m) => {
                    self.migrate_hub_data(&want.name, m, &want.tool_image, progress)
                        .await?;
                    // The job made the cookie secret.
                    ids.extend(self.blob_ids().await?);
                }
                Step::PruneVolumes { keep, .. } => {
                    self.prune_everywhere(&want.name, &want.tool_image, keep, progress)
                        .await?;
                }
                Step::RemoveNetwork(name) => match self.docker.remove_network(name).await {
                    Ok(()) => progress(format!("removed network {name}")),
                    Err(e) => progress(format!("network {name} kept: {e}")),
                },
            }
        }
        Ok(())
    }

    async fn create_network(&self, deployment: &str, n: &NetworkWant) -> Result<(), DeployError> {
        let mut options = HashMap::new();
        if n.encrypted {
            options.insert("encrypted".to_owned(), String::new());
        }
        let request = NetworkCreateRequest {
            name: n.name.clone(),
            driver: Some("overlay".to_owned()),
            attachable: Some(true),
            ipam: n.subnet.as_ref().map(|s| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(s.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(options),
            labels: Some(HashMap::from([
                (DEPLOY_LABEL.to_owned(), deployment.to_owned()),
                (ROLE_LABEL.to_owned(), "network".to_owned()),
            ])),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(DeployError::engine(format!("create network {}", n.name)))?;
        Ok(())
    }

    /// Removes a network once the tasks that used it are gone (the swarm
    /// detaches them asynchronously).
    pub(crate) async fn remove_network_when_free(&self, name: &str) -> Result<(), DeployError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.docker.remove_network(name).await {
                Ok(()) => return Ok(()),
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(DeployError::engine(format!("remove network {name}"))(e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    fn blob_labels(deployment: &str, b: &BlobWant) -> HashMap<String, String> {
        HashMap::from([
            (DEPLOY_LABEL.to_owned(), deployment.to_owned()),
            (ROLE_LABEL.to_owned(), b.role.to_string()),
        ])
    }

    async fn create_config(&self, deployment: &str, c: &BlobWant) -> Result<String, DeployError> {
        let SecretData::Bytes(data) = &c.data else {
            return Err(DeployError::MissingInput(c.name.clone()));
        };
        let spec = ConfigSpec {
            name: Some(c.name.clone()),
            labels: Some(Self::blob_labels(deployment, c)),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let id = self
            .docker
            .create_config(spec)
            .await
            .map_err(DeployError::engine(format!("create config {}", c.name)))?;
        Ok(id.id)
    }

    pub(super) async fn create_secret(
        &self,
        deployment: &str,
        s: &BlobWant,
    ) -> Result<String, DeployError> {
        let data = match &s.data {
            SecretData::Bytes(b) => b.clone(),
            SecretData::Generated => random_token()?.into_bytes(),
            SecretData::External => return Err(DeployError::MissingInput(s.name.clone())),
        };
        let spec = SecretSpec {
            name: Some(s.name.clone()),
            labels: Some(Self::blob_labels(deployment, s)),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let id = self
            .docker
            .create_secret(spec)
            .await
            .map_err(DeployError::engine(format!("create secret {}", s.name)))?;
        Ok(id.id)
    }

    /// Read, modify, write: the whole spec with the current version,
    /// again when another writer got there first.
    async fn update_service(
        &self,
        s: &ServiceWant,
        ids: &HashMap<String, String>,
    ) -> Result<(), DeployError> {
        let mut attempt = 0;
        loop {
            let current = self
                .docker
                .inspect_service(&s.name, None::<InspectServiceOptions>)
                .await
                .map_err(DeployError::engine(format!("inspect service {}", s.name)))?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptions {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..Default::default()
            };
            match self
                .docker
                .update_service(&s.name, to_spec(s, ids), options, None)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if attempt < 3
                        && (is_status(&e, 409)
                            || e.to_string().contains("update out of sequence")) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(DeployError::engine(format!("update service {}", s.name))(e)),
            }
        }
    }

    pub(crate) async fn remove_service(&self, name: &str) -> Result<(), DeployError> {
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(DeployError::engine(format!("remove service {name}"))(e)),
        }
    }
}

/// 32 random bytes as hex: the proxy's API token.
fn random_token() -> Result<String, DeployError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DeployError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
