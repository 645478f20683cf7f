//! `status`: the nodes, the deployment's services and tasks, and what the
//! hubgate replicas on this engine route and serve (asked through
//! `hubgate api` run inside them: their API is on the overlay network only).

use std::collections::HashMap;
use std::fmt;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{Node, Service, ServiceSpec};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNodesOptions, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder,
};
use futures_util::StreamExt as _;

use super::{Engine, deployment_filter};
use crate::DeployError;

/// A swarm node.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub hostname: String,
    pub role: String,
    pub state: String,
    pub availability: String,
    /// Leader, reachable or unreachable (managers only).
    pub manager: String,
    pub addr: String,
}

/// A service of the deployment.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub image: String,
    pub running: usize,
    pub mode: String,
}

/// A task that should be running.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub service: String,
    pub node: String,
    pub state: String,
    pub error: String,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub nodes: Vec<NodeRow>,
    pub services: Vec<ServiceRow>,
    pub tasks: Vec<TaskRow>,
    /// Per hubgate container on this engine: (container, routes JSON,
    /// certificates JSON), or the error met asking it.
    pub proxies: Vec<ProxyRow>,
    /// The hub's lease as a hub task on this engine reads it (who holds
    /// it, since when), or why it could not be read.
    pub hub_lease: Option<Result<String, String>>,
    /// Where the hub's database is.
    pub database: Option<String>,
}

/// A hubgate container on this engine: its ID, and its routes and
/// certificates (JSON), or the error met asking it.
pub type ProxyRow = (String, Result<(String, String), String>);

impl Engine {
    /// Runs `cmd` in `container` and returns its standard output.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> Result<String, DeployError> {
        let options = CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let what = || format!("exec {} in {container}", cmd.join(" "));
        let exec = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(DeployError::engine(what()))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(DeployError::engine(what()))?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                if let bollard::container::LogOutput::StdOut { message } =
                    chunk.map_err(DeployError::engine(what()))?
                {
                    out.push_str(&String::from_utf8_lossy(&message));
                }
            }
        }
        Ok(out)
    }

    /// The running containers of service `service` on this engine.
    pub async fn local_containers(&self, service: &str) -> Result<Vec<String>, DeployError> {
        let filters = HashMap::from([
            (
                "label".to_owned(),
                vec![format!("com.docker.swarm.service.name={service}")],
            ),
            ("status".to_owned(), vec!["running".to_owned()]),
        ]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(DeployError::engine("list containers"))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// The deployment's state.
    pub async fn status(&self, deployment: &str) -> Result<Status, DeployError> {
        self.require_manager().await?;
        let mut status = Status::default();
        let nodes = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(DeployError::engine("list nodes"))?;
        let mut host_of = HashMap::new();
        for n in nodes {
            let row = node_row(n.clone());
            host_of.insert(n.id.unwrap_or_default(), row.hostname.clone());
            status.nodes.push(row);
        }
        for s in self.services_of(deployment).await? {
            let spec = s.spec.unwrap_or_default();
            let name = spec.name.clone().unwrap_or_default();
            let tasks = self.running_tasks(&name, &host_of).await?;
            let running = tasks.iter().filter(|t| t.state == "running").count();
            status.tasks.extend(tasks);
            status.services.push(service_row(spec.clone(), running));
            if name == format!("{deployment}-hubgate") {
                status.proxies.extend(self.proxies(&name).await?);
            }
            if name == format!("{deployment}-hub") {
                let command = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.container_spec.as_ref())
                    .and_then(|c| c.command.clone())
                    .unwrap_or_default();
                status.database = database(&command);
                status.hub_lease = self.hub_lease(&name, &command).await;
            }
        }
        Ok(status)
    }

    /// The deployment's services and the user servers its hub spawned.
    async fn services_of(&self, deployment: &str) -> Result<Vec<Service>, DeployError> {
        let mut filter = deployment_filter(deployment);
        let mut services = self
            .docker
            .list_services(Some(
                ListServicesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(DeployError::engine("list services"))?;
        filter.insert(
            "label".to_owned(),
            vec![format!("{}={deployment}", crate::model::SPAWNED_LABEL)],
        );
        services.extend(
            self.docker
                .list_services(Some(
                    ListServicesOptionsBuilder::new().filters(&filter).build(),
                ))
                .await
                .map_err(DeployError::engine("list services"))?,
        );
        Ok(services)
    }

    /// The tasks of service `name` the swarm wants running, with their
    /// nodes' host names.
    async fn running_tasks(
        &self,
        name: &str,
        host_of: &HashMap<String, String>,
    ) -> Result<Vec<TaskRow>, DeployError> {
        let filters = HashMap::from([
            ("service".to_owned(), vec![name.to_owned()]),
            ("desired-state".to_owned(), vec!["running".to_owned()]),
        ]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(DeployError::engine("list tasks"))?;
        Ok(tasks
            .into_iter()
            .map(|t| {
                let st = t.status.unwrap_or_default();
                TaskRow {
                    service: name.to_owned(),
                    node: t
                        .node_id
                        .and_then(|n| host_of.get(&n).cloned())
                        .unwrap_or_default(),
                    state: st.state.map(|s| s.to_string()).unwrap_or_default(),
                    error: st.err.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The lease, read by the lease entrypoint (`command`, the hub's) in
    /// a hub task on this engine; None when the hub runs none here (a
    /// hub of an earlier hubgate, or `hub.node` elsewhere).
    async fn hub_lease(&self, service: &str, command: &[String]) -> Option<Result<String, String>> {
        let split = command.iter().position(|a| a == "--")?;
        let containers = match self.local_containers(service).await {
            Ok(c) => c,
            Err(e) => return Some(Err(e.to_string())),
        };
        let container = containers.first()?;
        let mut ask: Vec<&str> = command[..split].iter().map(String::as_str).collect();
        ask.push("--status");
        Some(
            self.exec(container, &ask)
                .await
                .map(|s| s.trim().to_owned())
                .map_err(|e| e.to_string()),
        )
    }

    /// What each hubgate container on this engine reports (routes, certificates).
    async fn proxies(&self, service: &str) -> Result<Vec<ProxyRow>, DeployError> {
        let mut rows = vec![];
        for c in self.local_containers(service).await? {
            let routes = self.exec(&c, &["hubgate", "api", "/api/routes"]).await;
            let certs = self.exec(&c, &["hubgate", "api", "/api/certs"]).await;
            let short: String = c.chars().take(12).collect();
            let answer = match (routes, certs) {
                (Ok(r), Ok(c)) => Ok((r, c)),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            rows.push((short, answer));
        }
        Ok(rows)
    }
}

/// Where the hub's database is, from its lease entrypoint's store.
fn database(command: &[String]) -> Option<String> {
    let store = command.iter().skip_while(|a| *a != "--store").nth(1)?;
    Some(if store.starts_with("sqlite:") {
        format!("sqlite on the storage, beside the lease ({store})")
    } else {
        format!("PostgreSQL, {store} (hub.database)")
    })
}

fn node_row(n: Node) -> NodeRow {
    let spec = n.spec.unwrap_or_default();
    NodeRow {
        hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
        role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
        state: n
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
        manager: n
            .manager_status
            .map(|m| {
                if m.leader == Some(true) {
                    "leader".to_owned()
                } else {
                    m.reachability.map(|r| r.to_string()).unwrap_or_default()
                }
            })
            .unwrap_or_default(),
        addr: n.status.and_then(|s| s.addr).unwrap_or_default(),
    }
}

fn service_row(spec: ServiceSpec, running: usize) -> ServiceRow {
    let mode = spec.mode.map_or_else(String::new, |m| {
        if m.global.is_some() {
            "global".to_owned()
        } else {
            format!(
                "{} replica(s)",
                m.replicated.and_then(|r| r.replicas).unwrap_or(1)
            )
        }
    });
    ServiceRow {
        name: spec.name.unwrap_or_default(),
        image: spec
            .task_template
            .and_then(|t| t.container_spec)
            .and_then(|c| c.image)
            .unwrap_or_default(),
        running,
        mode,
    }
}

/// Left-aligned columns.
fn table(f: &mut fmt::Formatter<'_>, header: &[&str], rows: &[Vec<String>]) -> fmt::Result {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(f, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(f, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.hostname.clone(),
                    n.role.clone(),
                    n.state.clone(),
                    n.availability.clone(),
                    n.manager.clone(),
                    n.addr.clone(),
                ]
            })
            .collect();
        table(
            f,
            &[
                "NODE",
                "ROLE",
                "STATE",
                "AVAILABILITY",
                "MANAGER",
                "ADDRESS",
            ],
            &nodes,
        )?;
        writeln!(f)?;
        let services: Vec<Vec<String>> = self
            .services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.mode.clone(),
                    s.running.to_string(),
                    s.image.clone(),
                ]
            })
            .collect();
        table(f, &["SERVICE", "MODE", "RUNNING", "IMAGE"], &services)?;
        writeln!(f)?;
        let tasks: Vec<Vec<String>> = self
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.service.clone(),
                    t.node.clone(),
                    t.state.clone(),
                    t.error.clone(),
                ]
            })
            .collect();
        table(f, &["TASK OF", "NODE", "STATE", "ERROR"], &tasks)?;
        if let Some(db) = &self.database {
            writeln!(f, "\nhub database: {db}")?;
        }
        match &self.hub_lease {
            Some(Ok(lease)) => writeln!(f, "hub lease: {lease}")?,
            Some(Err(e)) => writeln!(f, "hub lease: unreadable here ({e})")?,
            None => {}
        }
        for (container, answer) in &self.proxies {
            writeln!(f)?;
            match answer {
                Ok((routes, certs)) => {
                    writeln!(f, "hubgate {container} routes:")?;
                    write_routes(f, routes)?;
                    writeln!(f, "hubgate {container} certificates:")?;
                    write_certs(f, certs)?;
                }
                Err(e) => writeln!(f, "hubgate {container}: {e}")?,
            }
        }
        Ok(())
    }
}

fn write_routes(f: &mut fmt::Formatter<'_>, json: &str) -> fmt::Result {
    let Ok(serde_json::Value::Object(routes)) = serde_json::from_str(json) else {
        return writeln!(f, "  (unreadable answer: {})", json.trim());
    };
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|(path, data)| {
            let target = data
                .get("target")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            let user = data
                .get("user")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            vec![format!("  {path}"), target.to_owned(), user.to_owned()]
        })
        .collect();
    table(f, &["  PATH", "TARGET", "USER"], &rows)
}

fn write_certs(f: &mut fmt::Formatter<'_>, json: &str) -> fmt::Result {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let list = |key: &str| {
        let v = value.get(key).cloned().unwrap_or_default();
        let v = v.get("certificates").cloned().unwrap_or(v);
        v.as_array().cloned().unwrap_or_default()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows: Vec<Vec<String>> = list("acme")
        .iter()
        .chain(&list("static"))
        .map(|c| {
            let names: Vec<&str> = c
                .get("names")
                .and_then(|n| n.as_array())
                .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
                .unwrap_or_default();
            let state = c
                .get("state")
                .and_then(|s| s.as_str())
                .unwrap_or("static file");
            let expires = c
                .get("not_after_ms")
                .and_then(serde_json::Value::as_u64)
                .map_or_else(
                    || "-".to_owned(),
                    |ms| format!("in {:.1} days", (ms as f64 - now_ms as f64) / 86_400_000.0),
                );
            vec![format!("  {}", names.join(",")), state.to_owned(), expires]
        })
        .collect();
    if rows.is_empty() {
        return writeln!(f, "  (none: plain HTTP)");
    }
    table(f, &["  NAMES", "STATE", "EXPIRES"], &rows)
}
