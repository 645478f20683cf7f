//! Waiting for a deployment's services to run what they were asked to:
//! each failed task reported with the engine's reason as it happens, a
//! node that lacks an image named, a rolled-back update an error.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::models::{Service, ServiceUpdateStatusStateEnum, Task, TaskState};
use bollard::query_parameters::{InspectServiceOptions, ListTasksOptionsBuilder};

use super::service_spec::from_spec;
use super::{Engine, Nodes, Progress};
use crate::DeployError;
use crate::desired::Desired;
use crate::diff::service_changes;
use crate::model::{Mode, ServiceWant};

impl Engine {
    /// Waits until every service runs as many tasks as it should, on its
    /// current spec, reporting each change of counts and each task that
    /// fails (with the engine's reason) as soon as it is seen. Fails when a
    /// node keeps rejecting a task for want of its image, and when the
    /// swarm rolls an update back (a new task failed within the monitor
    /// period): the service then runs its last working spec.
    pub async fn converge(
        &self,
        want: &Desired,
        limit: Duration,
        progress: Progress<'_>,
    ) -> Result<(), DeployError> {
        let deadline = Instant::now() + limit;
        let networks = self.network_names().await?;
        let mut last = String::new();
        let mut watches: HashMap<&str, TaskWatch> = HashMap::new();
        loop {
            let nodes = self.nodes().await?;
            let mut done = true;
            let mut report = vec![];
            for s in &want.services {
                let watch = watches.entry(&s.name).or_default();
                let look = self.look(s, watch, &nodes, &networks, progress).await?;
                done &= look.running >= look.expected && !look.updating;
                report.push(format!(
                    "{} {}/{} running{}",
                    s.name,
                    look.running,
                    look.expected,
                    if look.updating { " (updating)" } else { "" }
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
                let errors: Vec<String> = watches
                    .iter()
                    .filter_map(|(s, w)| Some(format!("{s}: {}", w.last_error.as_ref()?)))
                    .collect();
                return Err(DeployError::NotConverged(format!(
                    "services not running after {} s: {last}{}",
                    limit.as_secs(),
                    if errors.is_empty() {
                        " (docker service ps shows why)".to_owned()
                    } else {
                        format!("; last task errors: {}", errors.join("; "))
                    }
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One look at service `s`: its task counts and update state; reports
    /// new task failures and a rollback that started, and fails for a node
    /// that lacks the image, a rolled-back update, a paused one.
    async fn look(
        &self,
        s: &ServiceWant,
        watch: &mut TaskWatch,
        nodes: &Nodes,
        networks: &HashMap<String, String>,
        progress: Progress<'_>,
    ) -> Result<Look, DeployError> {
        let filters = HashMap::from([("service".to_owned(), vec![s.name.clone()])]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(DeployError::engine(format!("list tasks of {}", s.name)))?;
        let expected = match s.mode {
            Mode::Replicated(n) => n,
            Mode::Global => global_expected(s, &tasks, nodes),
        };
        let running = tasks
            .iter()
            .filter(|t| {
                t.desired_state == Some(TaskState::RUNNING)
                    && t.status.as_ref().and_then(|st| st.state) == Some(TaskState::RUNNING)
            })
            .count() as u64;
        let seen = watch.observe(&tasks);
        let node = |id: &str| {
            nodes
                .host_of
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.to_owned())
        };
        for (id, err) in &seen.failed {
            progress(format!(
                "a task of {} failed on {}: {err}",
                s.name,
                node(id)
            ));
        }
        if let Some((id, err)) = seen.missing_image {
            return Err(DeployError::MissingImage {
                image: s.image.clone(),
                reason: format!(
                    "node {} lacks it (task of {} rejected: {err}); load it there with `images/build --load HOST` or `docker save | docker -H HOST load`",
                    node(&id),
                    s.name
                ),
            });
        }
        let service = self
            .docker
            .inspect_service(&s.name, None::<InspectServiceOptions>)
            .await
            .map_err(DeployError::engine(format!("inspect service {}", s.name)))?;
        let update = Update::of(&service, s, networks);
        let updating = update != Update::Settled;
        match update {
            Update::RollingBack(reason) if !watch.rollback_said => {
                watch.rollback_said = true;
                progress(format!(
                    "the update of {} failed ({reason}): the swarm is rolling it back to its last working spec",
                    s.name
                ));
            }
            Update::RolledBack(reason) => {
                return Err(DeployError::RolledBack {
                    service: s.name.clone(),
                    reason: watch.last_error.clone().unwrap_or(reason),
                });
            }
            Update::Paused(reason) => {
                return Err(DeployError::NotConverged(format!(
                    "the update of {} is paused: {reason} (docker service ps {} shows why)",
                    s.name, s.name
                )));
            }
            _ => {}
        }
        Ok(Look {
            expected,
            running,
            updating,
        })
    }
}

/// How many tasks a global service should run: one on each ready node
/// the swarm placed one on; for one on every manager, at least one per
/// ready manager (before the swarm has placed them all).
fn global_expected(s: &ServiceWant, tasks: &[Task], nodes: &Nodes) -> u64 {
    let placed = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter_map(|t| t.node_id.as_ref())
        .filter(|n| nodes.ready.contains(*n))
        .collect::<HashSet<_>>()
        .len() as u64;
    let every_manager =
        s.constraints.iter().all(|c| c == "node.role==manager") && !s.constraints.is_empty();
    if every_manager {
        placed.max(nodes.ready_managers)
    } else {
        placed
    }
}

/// A service's tasks and update, as one look found them.
struct Look {
    expected: u64,
    running: u64,
    updating: bool,
}

/// Where a service's update stands, as far as `converge` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Update {
    /// No update in progress (or one that completed).
    Settled,
    Updating,
    /// The swarm is rolling back an update that is not the one wanted.
    RollingBack(String),
    /// It rolled back: the service runs its previous spec, not `want`.
    RolledBack(String),
    /// An update or a rollback paused.
    Paused(String),
}

impl Update {
    fn of(service: &Service, want: &ServiceWant, networks: &HashMap<String, String>) -> Self {
        let Some(status) = &service.update_status else {
            return Self::Settled;
        };
        let message = status.message.clone().unwrap_or_default();
        // A rollback status stays until the next update: it is this
        // update's only while the spec is not the one wanted.
        let wanted = service
            .spec
            .as_ref()
            .is_some_and(|spec| service_changes(&from_spec(spec, networks), want).is_empty());
        use ServiceUpdateStatusStateEnum as S;
        match status.state {
            Some(S::UPDATING) => Self::Updating,
            Some(S::ROLLBACK_STARTED) if !wanted => Self::RollingBack(message),
            Some(S::ROLLBACK_COMPLETED) if !wanted => Self::RolledBack(message),
            Some(S::PAUSED | S::ROLLBACK_PAUSED) => Self::Paused(message),
            Some(S::ROLLBACK_STARTED) => Self::Updating,
            _ => Self::Settled,
        }
    }
}

/// What one look at a service's tasks found that is new.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Tasks that failed or were rejected since the last look: (node, error).
    failed: Vec<(String, String)>,
    /// A node whose tasks keep being rejected for want of the image.
    missing_image: Option<(String, String)>,
}

/// A service's failed tasks across looks. Tasks that had failed before
/// `converge` began (the image may have been loaded since, the port freed)
/// do not count; the swarm retries a rejected task within seconds, so two
/// new rejections for a missing image on one node are a verdict.
#[derive(Default)]
struct TaskWatch {
    /// Task IDs already failed at the first look.
    before: Option<HashSet<String>>,
    /// Failed tasks reported so far.
    reported: HashSet<String>,
    /// New rejections for a missing image, per node.
    missing: HashMap<String, HashSet<String>>,
    /// The last task error reported.
    last_error: Option<String>,
    /// The rollback was reported.
    rollback_said: bool,
}

impl TaskWatch {
    fn observe(&mut self, tasks: &[Task]) -> Seen {
        let failed: Vec<(String, String, String)> = tasks
            .iter()
            .filter_map(|t| {
                let status = t.status.as_ref()?;
                matches!(status.state, Some(TaskState::REJECTED | TaskState::FAILED)).then(|| {
                    (
                        t.id.clone().unwrap_or_default(),
                        t.node_id.clone().unwrap_or_default(),
                        status
                            .err
                            .clone()
                            .or_else(|| status.message.clone())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        let Some(before) = &self.before else {
            self.before = Some(failed.into_iter().map(|(id, _, _)| id).collect());
            return Seen::default();
        };
        let mut seen = Seen::default();
        for (id, node, err) in failed {
            if before.contains(&id) || !self.reported.insert(id.clone()) {
                continue;
            }
            if err.contains("No such image") {
                let on_node = self.missing.entry(node.clone()).or_default();
                on_node.insert(id);
                if on_node.len() >= 2 {
                    seen.missing_image = Some((node.clone(), err.clone()));
                }
            }
            self.last_error = Some(err.clone());
            seen.failed.push((node, err));
        }
        seen
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
    fn new_failures_are_reported_once_and_missing_images_judged() {
        let old = task("o", "n3", TaskState::REJECTED, "No such image: local/x:1");
        let mut w = TaskWatch::default();
        // Failed before the look began: not counted (the image may be
        // there now); a task that runs is fine.
        let first = w.observe(&[old.clone(), task("a", "n1", TaskState::RUNNING, "")]);
        assert_eq!(first, Seen::default());
        let r1 = task("r1", "n3", TaskState::REJECTED, "No such image: local/x:1");
        let seen = w.observe(&[old.clone(), r1.clone()]);
        assert_eq!(
            seen.failed,
            [("n3".into(), "No such image: local/x:1".into())]
        );
        assert_eq!(seen.missing_image, None);
        let r2 = task("r2", "n3", TaskState::REJECTED, "No such image: local/x:1");
        let seen = w.observe(&[old, r1, r2]);
        assert_eq!(seen.failed.len(), 1, "r1 was reported already");
        assert_eq!(
            seen.missing_image,
            Some(("n3".into(), "No such image: local/x:1".into()))
        );

        let mut port = TaskWatch::default();
        port.observe(&[]);
        let bind = "starting container failed: bind: address already in use";
        let seen = port.observe(&[task("f", "n2", TaskState::FAILED, bind)]);
        assert_eq!(seen.failed, [("n2".into(), bind.into())]);
        assert_eq!(seen.missing_image, None);
        assert_eq!(port.last_error.as_deref(), Some(bind));
    }
}
