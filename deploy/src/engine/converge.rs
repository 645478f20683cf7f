//! Waiting for a deployment's services to run what they were asked to,
//! and naming the node when a task cannot start for want of its image.

use std::collections::{HashMap, HashSet};
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
    /// keeps rejecting (an image missing on its node) fails, naming the node.
    pub async fn converge(
        &self,
        want: &Desired,
        limit: Duration,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        let mut missing: HashMap<&str, MissingImage> = HashMap::new();
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
                if let Some((node, err)) = missing.entry(&s.name).or_default().observe(&tasks) {
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

/// Tasks the engine rejected for a missing image, by node. Tasks rejected
/// before `converge` began (the image may have been loaded since) do not
/// count; the swarm retries a rejected task within seconds, so two new
/// rejections on one node are a verdict.
#[derive(Default)]
struct MissingImage {
    /// Task IDs already rejected at the first look.
    before: Option<HashSet<String>>,
    /// New rejections per node.
    fresh: HashMap<String, HashSet<String>>,
}

impl MissingImage {
    /// Takes a look at a service's tasks; the node and error once a node's
    /// tasks keep being rejected.
    fn observe(&mut self, tasks: &[Task]) -> Option<(String, String)> {
        let rejected: Vec<(String, String, String)> = tasks
            .iter()
            .filter_map(|t| {
                let status = t.status.as_ref()?;
                let err = status.err.clone().unwrap_or_default();
                (matches!(status.state, Some(TaskState::REJECTED | TaskState::FAILED))
                    && err.contains("No such image"))
                .then(|| {
                    (
                        t.id.clone().unwrap_or_default(),
                        t.node_id.clone().unwrap_or_default(),
                        err,
                    )
                })
            })
            .collect();
        let Some(before) = &self.before else {
            self.before = Some(rejected.into_iter().map(|(id, _, _)| id).collect());
            return None;
        };
        let mut verdict = None;
        for (id, node, err) in rejected {
            if before.contains(&id) {
                continue;
            }
            let seen = self.fresh.entry(node.clone()).or_default();
            seen.insert(id);
            if seen.len() >= 2 {
                verdict = Some((node, err));
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::TaskStatus;

    fn task(id: &str, node: &str, state: TaskState, err: &str) -> Task {
        Task {
            id: Some(id.into()),
            node_id: Some(node.into()),
            status: Some(TaskStatus {
                state: Some(state),
                err: (!err.is_empty()).then(|| err.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn repeated_new_rejections_on_a_node_are_a_verdict() {
        let old = task("o", "n3", TaskState::REJECTED, "No such image: local/x:1");
        let mut m = MissingImage::default();
        // Rejected before the look began: not counted (the image may be
        // there now); a task that runs is fine.
        assert_eq!(
            m.observe(&[old.clone(), task("a", "n1", TaskState::RUNNING, "")]),
            None
        );
        let first = task("r1", "n3", TaskState::REJECTED, "No such image: local/x:1");
        assert_eq!(m.observe(&[old.clone(), first.clone()]), None);
        let second = task("r2", "n3", TaskState::REJECTED, "No such image: local/x:1");
        assert_eq!(
            m.observe(&[old, first, second]),
            Some(("n3".into(), "No such image: local/x:1".into()))
        );
        let mut other = MissingImage::default();
        other.observe(&[]);
        assert_eq!(
            other.observe(&[task("f", "n2", TaskState::FAILED, "exit 1")]),
            None
        );
    }
}
