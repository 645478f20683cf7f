//! Moving the hub's state off the node-local volume where hubgate's
//! earlier releases kept it (`<name>-hub-data`): the old hub stops, then a
//! one-off job on its node (hubgate's image running `hubgate deploy
//! migrate-hub-data`) copies the database onto the storage and makes the
//! cookie secret it finds there the deployment's Docker secret. Users,
//! tokens, the record of running servers and browser sessions survive;
//! the old volume stays, untouched, as a backup.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{
    Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskState,
};

use super::job::Job;
use super::{Engine, Progress};
use crate::DeployError;
use crate::diff::HubDataMove;
use crate::model::{BlobWant, Role, SecretData};

/// How long the job waits for the old hub's container to end.
const OLD_HUB_LIMIT: Duration = Duration::from_secs(60);
/// How long `apply` waits for the job.
const JOB_LIMIT: Duration = Duration::from_secs(180);
/// Where the job mounts the old volume and the storage.
const OLD_DIR: &str = "/old-hub-data";
const STORAGE_DIR: &str = "/storage";
/// The files the old hub kept on its volume.
const DB_FILE: &str = "jupyterhub.sqlite";
const COOKIE_FILE: &str = "jupyterhub_cookie_secret";

impl Engine {
    /// `apply`'s part: the old hub removed, the job run on its node and
    /// removed; the job's outcome, or why it failed (the old volume is
    /// untouched either way).
    pub(crate) async fn migrate_hub_data(
        &self,
        deployment: &str,
        m: &HubDataMove,
        image: &str,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        self.remove_service(&m.hub_service).await?;
        progress(format!("removed the old hub service {}", m.hub_service));
        let job = format!("{deployment}-hub-migrate");
        self.remove_service(&job).await?;
        self.docker
            .create_service(job_spec(deployment, &job, image, m), None)
            .await
            .map_err(DeployError::engine(format!("create service {job}")))?;
        let outcome = self.wait_one_task(&job).await;
        self.remove_service(&job).await?;
        outcome?;
        progress(format!(
            "moved the hub's database from {} on {} to the storage, and kept its cookie secret",
            m.volume, m.node
        ));
        Ok(())
    }

    /// Waits until the job's one task ended: Ok, or its error.
    async fn wait_one_task(&self, job: &str) -> Result<(), DeployError> {
        let deadline = Instant::now() + JOB_LIMIT;
        while Instant::now() < deadline {
            let tasks = self.tasks_of(job).await?;
            for status in tasks.into_iter().filter_map(|t| t.status) {
                match status.state {
                    Some(TaskState::COMPLETE) => return Ok(()),
                    Some(TaskState::FAILED | TaskState::REJECTED | TaskState::SHUTDOWN) => {
                        return Err(DeployError::NotConverged(format!(
                            "the hub's database was not moved ({}): the old volume is untouched; see `docker service logs {job}` while it exists, fix and apply again",
                            status.err.unwrap_or_else(|| "the job failed".to_owned())
                        )));
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(DeployError::NotConverged(format!(
            "the job {job} did not end within {} s",
            JOB_LIMIT.as_secs()
        )))
    }

    /// The job's part, on the old hub's node: waits for the old hub's
    /// container to end, copies the database into `to` unless one is
    /// there, makes secret `cookie_secret` from the old cookie secret
    /// (random when there is none) unless it exists. What it did, a line
    /// each.
    pub async fn migrate_hub_data_here(
        &self,
        deployment: &str,
        hub_service: &str,
        from: &Path,
        to: &Path,
        cookie_secret: &str,
    ) -> Result<Vec<String>, DeployError> {
        let deadline = Instant::now() + OLD_HUB_LIMIT;
        while !self.local_containers(hub_service).await?.is_empty() {
            if Instant::now() > deadline {
                return Err(DeployError::NotConverged(format!(
                    "the old hub {hub_service} still runs here after {} s",
                    OLD_HUB_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut said = vec![copy_database(from, to)?];
        let secrets = self.secret_names(None).await?;
        if secrets.iter().any(|s| s == cookie_secret) {
            said.push(format!("the secret {cookie_secret} exists: kept"));
        } else {
            let data = match std::fs::read(from.join(COOKIE_FILE)) {
                Ok(bytes) => SecretData::Bytes(bytes),
                Err(_) => SecretData::Generated,
            };
            let from_file = matches!(data, SecretData::Bytes(_));
            let blob = BlobWant {
                name: cookie_secret.to_owned(),
                data,
                role: Role::HubCookieSecret,
            };
            self.create_secret(deployment, &blob).await?;
            said.push(if from_file {
                format!("the old cookie secret is now the secret {cookie_secret}")
            } else {
                format!("no old cookie secret: {cookie_secret} is new (browsers log in again)")
            });
        }
        Ok(said)
    }
}

/// Copies the database from `from` into `to` (made, owner-only) unless
/// `to` holds one: a line saying which.
fn copy_database(from: &Path, to: &Path) -> Result<String, DeployError> {
    let io =
        |what: String| move |e: std::io::Error| DeployError::NotConverged(format!("{what}: {e}"));
    let (source, dest) = (from.join(DB_FILE), to.join(DB_FILE));
    if dest.exists() {
        return Ok(format!("{} exists: kept, nothing copied", dest.display()));
    }
    if !source.exists() {
        return Ok(format!(
            "no database in {}: the hub starts a new one",
            from.display()
        ));
    }
    std::fs::create_dir_all(to).map_err(io(format!("make {}", to.display())))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", to.display())))?;
    let partial = to.join(format!("{DB_FILE}.partial"));
    std::fs::copy(&source, &partial).map_err(io(format!("copy {}", source.display())))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("sync {}", partial.display())))?;
    std::fs::rename(&partial, &dest).map_err(io(format!("rename to {}", dest.display())))?;
    Ok(format!("copied {} to {}", source.display(), dest.display()))
}

/// A `replicated-job` of one task on the old hub's node (hubgate as root:
/// the old files are root's), with the old volume read-only and the
/// storage.
fn job_spec(deployment: &str, job: &str, image: &str, m: &HubDataMove) -> ServiceSpec {
    let args = vec![
        "deploy".to_owned(),
        "migrate-hub-data".to_owned(),
        format!("--deployment={deployment}"),
        format!("--hub-service={}", m.hub_service),
        format!("--from={OLD_DIR}"),
        format!("--to={STORAGE_DIR}/{}", crate::desired::HUB_STATE_SUBDIR),
        format!("--cookie-secret={}", m.cookie_secret),
    ];
    let storage = Mount {
        target: Some(STORAGE_DIR.to_owned()),
        source: Some(m.storage.source.clone()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(m.storage.labels.clone().into_iter().collect()),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".to_owned()),
                options: Some(m.storage.driver_opts.clone().into_iter().collect()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let old = Mount {
        target: Some(OLD_DIR.to_owned()),
        source: Some(m.volume.clone()),
        typ: Some(MountType::VOLUME),
        read_only: Some(true),
        ..Default::default()
    };
    Job {
        deployment,
        name: job,
        role: "hub-migrate",
        image,
        args,
        mode: ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        },
        constraints: vec![format!("node.id=={}", m.node_id)],
        mounts: vec![old, storage],
    }
    .spec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_copied_once_and_never_over_one_there() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let to = new.path().join(".hubgate/hub");
        assert!(
            copy_database(old.path(), &to)
                .unwrap()
                .starts_with("no database")
        );
        std::fs::write(old.path().join(DB_FILE), b"old").unwrap();
        assert!(
            copy_database(old.path(), &to)
                .unwrap()
                .starts_with("copied")
        );
        assert_eq!(std::fs::read(to.join(DB_FILE)).unwrap(), b"old");
        std::fs::write(old.path().join(DB_FILE), b"older").unwrap();
        assert!(copy_database(old.path(), &to).unwrap().contains("kept"));
        assert_eq!(std::fs::read(to.join(DB_FILE)).unwrap(), b"old");
        assert!(!to.join(format!("{DB_FILE}.partial")).exists());
    }
}
