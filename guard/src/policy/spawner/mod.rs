//! The hub's spawner: SwarmSpawner's calls, for the deployment's user
//! servers only. It may create a service whose spec passes [`spec`]
//! (the file's image, network and user volume; no host access), and
//! inspect, update, scale, remove and read the tasks of services that
//! carry the deployment's spawned label (checked against the engine
//! before the call is forwarded); make and remove its servers' token
//! secrets; read the deployment's single-user configuration; read which
//! nodes are up (their IDs and states only); ping.

mod mounts;
mod resources;
mod spec;

use std::collections::BTreeMap;

use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::fields::fields;
use super::{Filter, Kind, Owned, Verdict, Want, deny};
use crate::query::{filters, query_pairs};
use crate::target::Call;

/// What the hub may make, generated from the deployment file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnerPolicy {
    /// The label every user server and token secret carries...
    pub label: String,
    /// ...with the deployment's name as its value.
    pub deployment: String,
    /// The start of every user server's service name.
    pub name_prefix: String,
    /// The start of every token secret's name.
    pub secret_prefix: String,
    /// The servers the file lets users run (one per profile): a spec must
    /// match one in image, resources and placement.
    pub servers: Vec<ServerRule>,
    /// The one network a user server joins (by name).
    pub network: String,
    /// The configs (by name) a user server may mount.
    pub configs: Vec<String>,
    /// The uid servers run as, when a spec names one.
    pub uid: u32,
    pub volume: VolumePolicy,
}

/// One kind of server the file lets users run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRule {
    pub image: String,
    /// Placement constraints it carries (it may add more).
    pub constraints: Vec<String>,
    pub limits: Limits,
    /// Generic resources (`NVIDIA-GPU`) it may reserve, and how many.
    #[serde(default)]
    pub generic: BTreeMap<String, u64>,
    /// Shared data volumes it may mount.
    #[serde(default)]
    pub mounts: Vec<DataMount>,
}

/// A shared data volume, as the file makes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A user's volume: `{username}` in the name and options stands for the
/// user's escaped name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumePolicy {
    pub name: String,
    pub target: String,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The file's resources (CPUs in billionths, memory in bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub cpu_limit: Option<u64>,
    pub memory_limit: Option<u64>,
    pub cpu_reservation: Option<u64>,
    pub memory_reservation: Option<u64>,
}

impl SpawnerPolicy {
    fn spawned(&self) -> Want {
        Want::Label(self.label.clone(), self.deployment.clone())
    }

    fn service(&self, id: &str) -> Result<Owned, String> {
        Owned::subject(Kind::Services, id, self.spawned())
    }
}

pub(super) fn judge(p: &SpawnerPolicy, call: &Call, body: Option<&Value>) -> Verdict {
    match route(p, call, body) {
        Ok(verdict) => verdict,
        Err((rule, why)) => deny(rule, why),
    }
}

type Judged = Result<Verdict, (&'static str, String)>;

fn route(p: &SpawnerPolicy, call: &Call, body: Option<&Value>) -> Judged {
    let path = call.path();
    let m = &call.method;
    let no_body = || match body {
        None => Ok(()),
        Some(_) => Err((
            "spawner.request",
            "a body where the API takes none".to_owned(),
        )),
    };
    let owned = |o: Result<Owned, String>| o.map_err(|e| ("spawner.owned", e));
    match (m, path.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) | (&Method::GET, ["version"]) => {
            no_body()?;
            Ok(Verdict::Allow(Filter::Pass))
        }
        (&Method::GET, ["configs", name]) if p.configs.iter().any(|c| c == name) => {
            no_body()?;
            Ok(Verdict::Allow(Filter::Pass))
        }
        (&Method::POST, ["services", "create"]) => {
            let spec = body.ok_or(("spawner.spec", "no spec".to_owned()))?;
            let refs = spec::check(p, spec).map_err(|e| ("spawner.spec", e))?;
            Ok(Verdict::AllowIfOwned(refs, Filter::Pass))
        }
        (&Method::GET, ["services", id]) | (&Method::DELETE, ["services", id]) => {
            no_body()?;
            Ok(Verdict::AllowIfOwned(
                vec![owned(p.service(id))?],
                Filter::Pass,
            ))
        }
        (&Method::POST, ["services", id, "update"]) => {
            only_query(call, &["version"])?;
            let spec = body.ok_or(("spawner.spec", "no spec".to_owned()))?;
            let mut refs = vec![owned(p.service(id))?];
            refs.extend(spec::check(p, spec).map_err(|e| ("spawner.spec", e))?);
            Ok(Verdict::AllowIfOwned(refs, Filter::Pass))
        }
        (&Method::GET, ["tasks"]) => {
            no_body()?;
            tasks(p, call)
        }
        (&Method::GET, ["nodes"]) => {
            no_body()?;
            only_query(call, &[])?;
            Ok(Verdict::Allow(Filter::NodeStates))
        }
        (&Method::POST, ["secrets", "create"]) => {
            let spec = body.ok_or(("spawner.secret", "no spec".to_owned()))?;
            secret(p, spec).map_err(|e| ("spawner.secret", e))?;
            Ok(Verdict::Allow(Filter::Pass))
        }
        (&Method::DELETE, ["secrets", id]) => {
            no_body()?;
            let o = owned(Owned::subject(Kind::Secrets, id, p.spawned()))?;
            Ok(Verdict::AllowIfOwned(vec![o], Filter::Pass))
        }
        (&Method::GET, ["secrets"]) => {
            no_body()?;
            secrets_list(p, call)
        }
        _ => Err((
            "spawner.paths",
            "the hub may ping, read its servers' configuration and which nodes are up, and \
             make, read, update and remove its user servers, their tasks and their token \
             secrets only"
                .to_owned(),
        )),
    }
}

/// The query of `call` holds only `keys`, each once.
fn only_query(call: &Call, keys: &[&str]) -> Result<(), (&'static str, String)> {
    let pairs = query_pairs(call.query.as_deref()).map_err(|e| ("spawner.query", e))?;
    match pairs.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
        Some((k, _)) => Err((
            "spawner.query",
            format!("the parameter {k:?} is not allowed"),
        )),
        None => Ok(()),
    }
}

/// Tasks of the deployment's user servers only: a `service` filter whose
/// every value is checked, and at most a desired state besides.
fn tasks(p: &SpawnerPolicy, call: &Call) -> Judged {
    only_query(call, &["filters"])?;
    let f = filters(call.query.as_deref()).map_err(|e| ("spawner.tasks", e))?;
    let services = f.get("service").cloned().unwrap_or_default();
    if services.is_empty() {
        return Err(("spawner.tasks", "tasks are read by service only".to_owned()));
    }
    if let Some(k) = f
        .keys()
        .find(|k| !matches!(k.as_str(), "service" | "desired-state"))
    {
        return Err(("spawner.tasks", format!("the filter {k:?} is not allowed")));
    }
    let owned = services
        .iter()
        .map(|s| p.service(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("spawner.owned", e))?;
    Ok(Verdict::AllowIfOwned(owned, Filter::RedactEnv(&[])))
}

/// The deployment's token secrets only, by their label.
fn secrets_list(p: &SpawnerPolicy, call: &Call) -> Judged {
    only_query(call, &["filters"])?;
    let f = filters(call.query.as_deref()).map_err(|e| ("spawner.secrets", e))?;
    let own = format!("{}={}", p.label, p.deployment);
    if !f.get("label").is_some_and(|l| l.contains(&own)) {
        return Err((
            "spawner.secrets",
            format!("secrets are listed by the label {own} only"),
        ));
    }
    Ok(Verdict::Allow(Filter::Pass))
}

/// A token secret: the deployment's name prefix and label.
fn secret(p: &SpawnerPolicy, spec: &Value) -> Result<(), String> {
    let s = fields(spec, "Secret", &["Name", "Labels", "Data"])?;
    let name = s.str("Name")?.unwrap_or_default();
    if !name.starts_with(&p.secret_prefix) {
        return Err(format!(
            "Secret.Name {name:?} is not a token secret's (\"{}...\")",
            p.secret_prefix
        ));
    }
    let labels = s.string_map("Labels")?;
    if !labels.contains(&(p.label.as_str(), p.deployment.as_str())) {
        return Err(format!("Secret.Labels lacks {}={}", p.label, p.deployment));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
