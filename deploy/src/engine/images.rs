//! Whether the user servers' images are on the nodes their servers may
//! run on: a one-off `global-job` of each image on those nodes, running
//! `true` (the image's own command would start a server), with no socket,
//! network, secret or volume. A node whose task the engine rejects for
//! want of the image is named; the job's service is removed afterwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ServiceSpec, ServiceSpecMode, Task, TaskSpecContainerSpec, TaskState};

use super::job::one_off;
use super::{Engine, Progress};
use crate::DeployError;
use crate::desired::{Desired, short_hash};
use crate::model::{Role, ServerImage};

/// How long one image's job may take on every node.
const JOB_LIMIT: Duration = Duration::from_secs(90);
/// How long the swarm has to place a job's tasks before none means no
/// node may run the image's servers.
const PLACE_LIMIT: Duration = Duration::from_secs(10);

impl Engine {
    /// Looks for each user server image on the nodes its servers may run
    /// on and reports, per image, the nodes that lack it (or that every
    /// node has it). A lacking node is not an error: `apply` has nothing
    /// to change for it; a server placed there fails to start.
    pub async fn check_server_images(
        &self,
        want: &Desired,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        let checks = want
            .server_images
            .iter()
            .map(|i| self.look_for(&want.name, i));
        let outcomes = futures_util::future::join_all(checks).await;
        let host_of = self.nodes().await?.host_of;
        let node = |id: &str| host_of.get(id).cloned().unwrap_or_else(|| id.to_owned());
        for (image, outcome) in want.server_images.iter().zip(outcomes) {
            // A check that could not run is reported like its findings:
            // everything else of the apply is done and stays.
            let Looked {
                nodes,
                lacking,
                unfinished,
            } = match outcome {
                Ok(looked) => looked,
                Err(e) => {
                    progress(format!("{} not looked for on the nodes: {e}", image.image));
                    continue;
                }
            };
            let lacking: Vec<String> = lacking.iter().map(|n| node(n)).collect();
            progress(if unfinished > 0 {
                format!(
                    "{} not looked for on {unfinished} node(s): the check did not end there in {} s (a pull?)",
                    image.image,
                    JOB_LIMIT.as_secs()
                )
            } else if nodes == 0 {
                format!(
                    "no node may run servers of {} (placement {:?})",
                    image.image, image.constraints
                )
            } else if lacking.is_empty() {
                format!(
                    "{} is on the {nodes} node(s) its servers may run on",
                    image.image
                )
            } else {
                format!(
                    "{} is missing on {}: a server placed there fails to start; load it there with `images/build --load HOST` or `docker save | docker -H HOST load`",
                    image.image,
                    lacking.join(", ")
                )
            });
        }
        Ok(())
    }

    /// One image's job: how many nodes ran it, which lacked the image.
    async fn look_for(&self, deployment: &str, image: &ServerImage) -> Result<Looked, DeployError> {
        let key = format!("{}\n{}", image.image, image.constraints.join("\n"));
        let job = format!(
            "{deployment}-image-check-{}",
            &short_hash(key.as_bytes())[..8]
        );
        self.remove_service(&job).await?;
        self.docker
            .create_service(spec(deployment, &job, image), None)
            .await
            .map_err(DeployError::engine(format!("create service {job}")))?;
        let outcome = self.wait_ended(&job).await;
        self.remove_service(&job).await?;
        let tasks = outcome?;
        let unfinished = tasks.iter().filter(|t| !ended(t)).count();
        let lacking = tasks
            .iter()
            .filter(|t| {
                let status = t.status.as_ref();
                let err = status.and_then(|s| s.err.as_deref()).unwrap_or_default();
                err.contains("No such image")
            })
            .filter_map(|t| t.node_id.clone())
            .collect();
        Ok(Looked {
            nodes: tasks.len(),
            lacking,
            unfinished,
        })
    }

    /// The job's tasks on ready nodes once every one has ended, or as they
    /// are after [`JOB_LIMIT`].
    async fn wait_ended(&self, job: &str) -> Result<Vec<Task>, DeployError> {
        let started = Instant::now();
        loop {
            let ready = self.nodes().await?.ready;
            let tasks: Vec<Task> = self
                .tasks_of(job)
                .await?
                .into_iter()
                .filter(|t| t.node_id.as_ref().is_some_and(|n| ready.contains(n)))
                .collect();
            let all_ended = tasks.iter().all(ended);
            if (all_ended && !tasks.is_empty())
                || (tasks.is_empty() && started.elapsed() > PLACE_LIMIT)
            {
                return Ok(tasks);
            }
            if started.elapsed() > JOB_LIMIT {
                // Still pulling a large image, say: what ended is known.
                return Ok(tasks);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// What one image's job found.
struct Looked {
    nodes: usize,
    /// IDs of the nodes that lack the image.
    lacking: Vec<String>,
    /// Nodes whose task had not ended when the check gave up.
    unfinished: usize,
}

/// Whether a job's task has ended, one way or another.
fn ended(t: &Task) -> bool {
    let state = t.status.as_ref().and_then(|s| s.state);
    matches!(
        state,
        Some(TaskState::COMPLETE | TaskState::FAILED | TaskState::REJECTED | TaskState::SHUTDOWN)
    )
}

/// The job: `true` from the image, once on each node its servers may run
/// on, never restarted.
fn spec(deployment: &str, job: &str, image: &ServerImage) -> ServiceSpec {
    let container = TaskSpecContainerSpec {
        image: Some(image.image.clone()),
        command: Some(vec!["true".to_owned()]),
        ..Default::default()
    };
    let mode = ServiceSpecMode {
        global_job: Some(HashMap::new()),
        ..Default::default()
    };
    one_off(
        deployment,
        job,
        Role::ImageCheck.as_str(),
        mode,
        container,
        image.constraints.clone(),
    )
}
