//! Waiting for a deployment's services to run what they were asked to,
//! and naming the node when a task cannot start for want of its image.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ServiceUpdateStatusStateEnum, Task, TaskState};
use bollard::query_parameters::{InspectServiceOptions, ListNodesOptions, ListTasksOptionsBuilder};

use super::{Engine, Progress};
use crate::DeployError;
use crate::desired::Desired;
use crate::spec::Mode;

impl Engine {
    /// Waits until every service runs as many tasks as it should, on its
    /// current spec, reporting each change of counts; a task the engine
    /// rejects (an image missing on its node) fails at once.
    pub async fn converge(
        &self,
        want: &Desired,
        limit: Duration,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        loop {
            let nodes = self
                .docker
                .list_nodes(None::<ListNodesOptions>)
                .await
                .map_err(DeployError::engine("list nodes"))?;
            let host_of: HashMap<String, String> = nodes
                .iter()
                .filter_map(|n| Some((n.id.clone()?, n.description.as_ref()?.hostname.clone()?)))
                .collect();
            let ready_managers = nodes
                .iter()
                .filter(|n| {
                    n.manager_status.is_some()
                        && n.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::NodeState::READY)
                        && n.spec.as_ref().and_then(|s| s.availability)
                            == Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE)
                })
                .count() as u64;
            let mut done = true;
            let mut report = vec![];
            for s in &want.services {
                let expected = match s.mode {
                    Mode::Replicated(n) => n,
                    // Global services here are constrained to managers.
                    Mode::Global => ready_managers,
                };
                let filters = HashMap::from([("service".to_owned(), vec![s.name.clone()])]);
                let tasks = self
                    .docker
                    .list_tasks(Some(
                        ListTasksOptionsBuilder::new().filters(&filters).build(),
                    ))
                    .await
                    .map_err(DeployError::engine(format!("list tasks of {}", s.name)))?;
                let running = tasks
                    .iter()
                    .filter(|t| {
                        t.desired_state == Some(TaskState::RUNNING)
                            && t.status.as_ref().and_then(|st| st.state) == Some(TaskState::RUNNING)
                    })
                    .count() as u64;
                if let Some((node, err)) = missing_image(&tasks) {
                    let node = host_of.get(&node).cloned().unwrap_or(node);
                    return Err(DeployError::MissingImage {
                        image: s.image.clone(),
                        reason: format!(
                            "node {node} lacks it (task of {} rejected: {err}); load it there with `images/build --load HOST` or `docker save | docker -H HOST load`",
                            s.name
                        ),
                    });
                }
                let service = self
                    .docker
                    .inspect_service(&s.name, None::<InspectServiceOptions>)
                    .await
                    .map_err(DeployError::engine(format!("inspect service {}", s.name)))?;
                let updating = service
                    .update_status
                    .and_then(|u| u.state)
                    .is_some_and(|st| {
                        matches!(
                            st,
                            ServiceUpdateStatusStateEnum::UPDATING
                                | ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                        )
                    });
                if running < expected || updating {
                    done = false;
                }
                report.push(format!(
                    "{} {running}/{expected} running{}",
                    s.name,
                    if updating { " (updating)" } else { "" }
                ));
            }
            let line = report.join(", ");
            if line != last {
                progress(line.clone());
                last = line;
            }
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DeployError::NotConverged(format!(
                    "services not running after {} s: {last} (docker service ps shows why)",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The node (ID) and error of a task slot whose latest task the engine
/// rejected for a missing image. Swarm retries such a task with new ones,
/// so only the newest task of each node (global services) or slot counts:
/// once the image is there, a newer task replaces the rejected one.
fn missing_image(tasks: &[Task]) -> Option<(String, String)> {
    let mut newest: HashMap<String, &Task> = HashMap::new();
    for t in tasks {
        let key = match t.slot {
            Some(slot) if slot > 0 => format!("slot {slot}"),
            _ => t.node_id.clone().unwrap_or_default(),
        };
        let version = |t: &Task| t.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        if newest.get(&key).is_none_or(|n| version(n) < version(t)) {
            newest.insert(key, t);
        }
    }
    newest.values().find_map(|t| {
        let status = t.status.as_ref()?;
        let err = status.err.clone().unwrap_or_default();
        (matches!(status.state, Some(TaskState::REJECTED | TaskState::FAILED))
            && err.contains("No such image"))
        .then(|| (t.node_id.clone().unwrap_or_default(), err))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ObjectVersion, TaskStatus};

    fn task(node: &str, version: u64, state: TaskState, err: &str) -> Task {
        Task {
            node_id: Some(node.into()),
            version: Some(ObjectVersion {
                index: Some(version),
            }),
            status: Some(TaskStatus {
                state: Some(state),
                err: (!err.is_empty()).then(|| err.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_newest_task_of_a_node_tells() {
        let rejected = task("n3", 5, TaskState::REJECTED, "No such image: local/x:1");
        let found = missing_image(&[task("n1", 4, TaskState::RUNNING, ""), rejected.clone()]);
        assert_eq!(
            found,
            Some(("n3".into(), "No such image: local/x:1".into()))
        );
        // The image arrived: a newer task runs on n3.
        let later = task("n3", 9, TaskState::PREPARING, "");
        assert_eq!(missing_image(&[rejected, later]), None);
        assert_eq!(
            missing_image(&[task("n2", 1, TaskState::FAILED, "exit 1")]),
            None
        );
    }
}
