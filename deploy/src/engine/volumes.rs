//! The per-node volume rule (`crate::volumes::Keep`) applied: on this
//! engine (`prune_local`, what the job runs), and on every node of the
//! swarm through a one-off `global-job` service (`prune_everywhere`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::models::{ServiceSpec, ServiceSpecMode, Task, TaskState};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListTasksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptions, RemoveVolumeOptionsBuilder,
};

use super::job::Job;
use super::{Engine, Progress, deployment_filter};
use crate::DeployError;
use crate::observed::VolumeSeen;
use crate::volumes::Keep;

/// How long a node's job retries a volume a stopping container still uses.
const IN_USE_RETRY: Duration = Duration::from_secs(30);
/// How long `prune_everywhere` waits for every node's job.
const JOB_LIMIT: Duration = Duration::from_secs(180);

/// What `prune_local` did on one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: Vec<String>,
    /// Volumes still in use when the retries ran out.
    pub in_use: Vec<String>,
}

impl Engine {
    /// Deployment `name`'s volumes on this engine; with `unused`, only
    /// those no container uses (`dangling`).
    pub(crate) async fn volumes_of(
        &self,
        name: &str,
        unused: bool,
    ) -> Result<Vec<VolumeSeen>, DeployError> {
        let mut filter = deployment_filter(name);
        if unused {
            filter.insert("dangling".to_owned(), vec!["true".to_owned()]);
        }
        let listed = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(DeployError::engine("list volumes"))?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeSeen {
                labels: v.labels,
                options: v.options.into_iter().collect(),
                name: v.name,
            })
            .collect())
    }

    /// Removes deployment `name`'s volumes on this engine that `keep` does
    /// not keep; one a container still uses is asked again for a while
    /// (its server may be stopping).
    pub async fn prune_local(&self, name: &str, keep: &Keep) -> Result<Pruned, DeployError> {
        self.remove_ended_jobs(&job_name(name)).await;
        let mut left: Vec<String> = self
            .volumes_of(name, false)
            .await?
            .into_iter()
            .filter(|v| !keep.keeps(&v.name, &v.labels))
            .map(|v| v.name)
            .collect();
        self.remove_ended_users(&left).await;
        let mut pruned = Pruned::default();
        let deadline = Instant::now() + IN_USE_RETRY;
        while !left.is_empty() {
            let mut busy = vec![];
            for v in left {
                let options = RemoveVolumeOptionsBuilder::new().force(false).build();
                match self.docker.remove_volume(&v, Some(options)).await {
                    Ok(()) => pruned.removed.push(v),
                    Err(e) if super::apply::is_status(&e, 404) => {}
                    Err(e) if super::apply::is_status(&e, 409) => busy.push(v),
                    Err(e) => return Err(DeployError::engine(format!("remove volume {v}"))(e)),
                }
            }
            if busy.is_empty() || Instant::now() > deadline {
                pruned.in_use = busy;
                break;
            }
            left = busy;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(pruned)
    }

    /// Removes the ended containers of swarm tasks that mount one of
    /// `volumes`: the swarm keeps a task's exited container as history, and
    /// Docker counts a volume an exited container names as in use (an old
    /// hub task's would keep the old storage's volume for good).
    async fn remove_ended_users(&self, volumes: &[String]) {
        let label = "com.docker.swarm.task.id".to_owned();
        let statuses = ["exited", "created"];
        self.remove_ended(label, &statuses, |c| {
            c.mounts.iter().flatten().any(|m| {
                m.name
                    .as_ref()
                    .is_some_and(|n| volumes.iter().any(|v| v == n))
            })
        })
        .await;
    }

    /// Removes the ended containers of earlier runs of `job` on this
    /// engine: the swarm leaves a finished job task's container behind, so
    /// each node keeps the last one only.
    async fn remove_ended_jobs(&self, job: &str) {
        let label = format!("com.docker.swarm.service.name={job}");
        self.remove_ended(label, &["exited"], |_| true).await;
    }

    /// Removes this engine's containers with `label`, in one of `statuses`,
    /// that `which` picks; best effort (one that cannot go stays).
    async fn remove_ended(
        &self,
        label: String,
        statuses: &[&str],
        which: impl Fn(&bollard::models::ContainerSummary) -> bool,
    ) {
        let filters = HashMap::from([
            ("label".to_owned(), vec![label]),
            (
                "status".to_owned(),
                statuses.iter().map(|s| (*s).to_owned()).collect(),
            ),
        ]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(ended) = self.docker.list_containers(Some(options)).await else {
            return;
        };
        for id in ended.into_iter().filter(|c| which(c)).filter_map(|c| c.id) {
            let _ = self
                .docker
                .remove_container(&id, None::<RemoveContainerOptions>)
                .await;
        }
    }

    /// Runs `hubgate deploy prune-volumes` (from `image`, hubgate's) once
    /// on every node, reporting each node's outcome; the job's service is
    /// removed afterwards. A node whose job fails keeps its volumes (and
    /// says why): the deployment itself is not affected.
    pub async fn prune_everywhere(
        &self,
        name: &str,
        image: &str,
        keep: &Keep,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        let job = job_name(name);
        self.remove_service(&job).await?;
        let mut args = vec![
            "deploy".to_owned(),
            "prune-volumes".to_owned(),
            format!("--deployment={name}"),
        ];
        args.extend(keep.to_args());
        self.docker
            .create_service(job_spec(name, &job, image, args), None)
            .await
            .map_err(DeployError::engine(format!("create service {job}")))?;
        let outcome = self.wait_job(&job).await;
        self.remove_service(&job).await?;
        let host_of = self.nodes().await?.host_of;
        let outcome = outcome?;
        let node = |id: &str| host_of.get(id).cloned().unwrap_or_else(|| id.to_owned());
        for (id, result) in &outcome {
            match result {
                Ok(()) => progress(format!("volumes pruned on {}", node(id))),
                Err(e) => progress(format!(
                    "volumes on {} not pruned ({e}): they stay; apply again once their servers stop",
                    node(id)
                )),
            }
        }
        Ok(())
    }

    /// Waits until the job's task on every node has ended: per node, Ok or
    /// the task's error.
    async fn wait_job(&self, job: &str) -> Result<Vec<(String, Result<(), String>)>, DeployError> {
        let deadline = Instant::now() + JOB_LIMIT;
        loop {
            let tasks = self.tasks_of(job).await?;
            // A node that is down runs nothing: its task is not waited for.
            let ready = self.nodes().await?.ready;
            let on_ready: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.node_id.as_ref().is_some_and(|n| ready.contains(n)))
                .collect();
            let ended: Vec<(String, Result<(), String>)> = on_ready
                .iter()
                .filter_map(|t| {
                    let status = t.status.as_ref()?;
                    let node = t.node_id.clone().unwrap_or_default();
                    match status.state? {
                        TaskState::COMPLETE => Some((node, Ok(()))),
                        TaskState::FAILED | TaskState::REJECTED | TaskState::SHUTDOWN => {
                            let err = status.err.clone().unwrap_or_else(|| "ended".to_owned());
                            Some((node, Err(err)))
                        }
                        _ => None,
                    }
                })
                .collect();
            let nodes: HashSet<&str> = ended.iter().map(|(n, _)| n.as_str()).collect();
            if nodes.len() >= ready.len() && ended.len() == on_ready.len() {
                return Ok(ended);
            }
            if Instant::now() > deadline {
                return Err(DeployError::NotConverged(format!(
                    "the volume job {job} did not end on every node in {} s",
                    JOB_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Engine {
    /// Every task of service `service` (of any state).
    pub(super) async fn tasks_of(&self, service: &str) -> Result<Vec<Task>, DeployError> {
        let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
        self.docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(DeployError::engine(format!("list tasks of {service}")))
    }
}

/// The volume job's service name.
fn job_name(deployment: &str) -> String {
    format!("{deployment}-volume-prune")
}

/// A `global-job` service: one task on every node, running hubgate with
/// the node's Docker socket (it removes volumes there).
fn job_spec(deployment: &str, job: &str, image: &str, args: Vec<String>) -> ServiceSpec {
    Job {
        deployment,
        name: job,
        role: "volume-prune",
        image,
        args,
        mode: ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
        constraints: vec![],
        mounts: vec![],
    }
    .spec()
}
