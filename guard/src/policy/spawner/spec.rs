//! A user server's service spec, as the hub may create or update it: the
//! deployment's image, network, user volume and configuration, its
//! token secret, resources within the file's limits, nothing that
//! reaches the node (no bind mounts, ports, capabilities, host network).
//! Every key must be one this check knows: a field it does not read is
//! refused, never passed unjudged.

use serde_json::Value;

use super::{ServerRule, SpawnerPolicy};
use crate::policy::fields::{Fields, fields};
use crate::policy::{Kind, Owned, Want};

/// Environment keys a spec may not set: a user's token reaches the server
/// as a Docker secret, never in the spec.
const TOKEN_ENV: &[&str] = &["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"];

/// Checks a service spec; the objects it refers to by ID (the hub's
/// token secrets, the deployment's configuration and network), which must
/// be checked against the engine before the spec is forwarded.
pub(super) fn check(p: &SpawnerPolicy, spec: &Value) -> Result<Vec<Owned>, String> {
    let top = fields(
        spec,
        "Spec",
        &[
            "Name",
            "Labels",
            "TaskTemplate",
            "Mode",
            "EndpointSpec",
            "UpdateConfig",
            "RollbackConfig",
        ],
    )?;
    let name = top.str("Name")?.unwrap_or_default();
    if !name.starts_with(&p.name_prefix) || name.len() == p.name_prefix.len() {
        return Err(format!(
            "Spec.Name {name:?} is not a user server's (\"{}...\")",
            p.name_prefix
        ));
    }
    labels(p, &top)?;
    mode(&top)?;
    endpoint(&top)?;
    let Some(task) = top.get("TaskTemplate") else {
        return Err("Spec.TaskTemplate is missing".to_owned());
    };
    task_template(p, task)
}

fn labels(p: &SpawnerPolicy, top: &Fields<'_>) -> Result<(), String> {
    let labels = top.string_map("Labels")?;
    if !labels.contains(&(p.label.as_str(), p.deployment.as_str())) {
        return Err(format!(
            "Spec.Labels lacks {}={} (the deployment's user servers carry it)",
            p.label, p.deployment
        ));
    }
    // Labels steer hubgate's discovery and `hubgate deploy`: a user server
    // carries only the deployment's spawned label.
    match labels.iter().find(|(k, _)| *k != p.label) {
        Some((k, _)) => Err(format!("Spec.Labels.{k} is not allowed")),
        None => Ok(()),
    }
}

fn mode(top: &Fields<'_>) -> Result<(), String> {
    let Some(mode) = top.get("Mode") else {
        return Ok(());
    };
    let mode = fields(mode, "Spec.Mode", &["Replicated"])?;
    if let Some(replicated) = mode.get("Replicated") {
        let replicas =
            fields(replicated, "Spec.Mode.Replicated", &["Replicas"])?.uint("Replicas")?;
        if replicas.unwrap_or(1) > 1 {
            return Err("Spec.Mode.Replicated.Replicas: a user server has one task".to_owned());
        }
    }
    Ok(())
}

fn endpoint(top: &Fields<'_>) -> Result<(), String> {
    let Some(endpoint) = top.get("EndpointSpec") else {
        return Ok(());
    };
    let endpoint = fields(endpoint, "Spec.EndpointSpec", &["Mode", "Ports"])?;
    endpoint.empty("Ports")?;
    match endpoint.str("Mode")? {
        None | Some("dnsrr" | "vip") => Ok(()),
        Some(other) => Err(format!("Spec.EndpointSpec.Mode {other:?}")),
    }
}

fn task_template(p: &SpawnerPolicy, task: &Value) -> Result<Vec<Owned>, String> {
    let task = fields(
        task,
        "Spec.TaskTemplate",
        &[
            "ContainerSpec",
            "Resources",
            "RestartPolicy",
            "Placement",
            "Networks",
            "ForceUpdate",
            "Runtime",
        ],
    )?;
    if !matches!(task.str("Runtime")?, None | Some("container" | "")) {
        return Err("Spec.TaskTemplate.Runtime: only containers".to_owned());
    }
    task.uint("ForceUpdate")?;
    let mut owned = networks(p, &task)?;
    let Some(container) = task.get("ContainerSpec") else {
        return Err("Spec.TaskTemplate.ContainerSpec is missing".to_owned());
    };
    let c = container_spec(p, container)?;
    server_rule(p, &task, &c)?;
    owned.extend(c.refs);
    Ok(owned)
}

/// The spec's image, resources, placement and mounts are those of one
/// kind of server the file names (several may share an image).
fn server_rule(p: &SpawnerPolicy, task: &Fields<'_>, c: &Container<'_>) -> Result<(), String> {
    let image = c.image;
    let mut why = vec![];
    for rule in p.servers.iter().filter(|r| r.image == image) {
        let judged = super::resources::check(rule, task)
            .and_then(|()| placement(rule, task))
            .and_then(|()| super::mounts::check(p, rule, &c.mounts_at, c.mounts));
        match judged {
            Ok(()) => return Ok(()),
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        return Err(format!(
            "Spec.TaskTemplate.ContainerSpec.Image {image:?} is not one of the file's images"
        ));
    }
    Err(why.join("; "))
}

fn placement(rule: &ServerRule, task: &Fields<'_>) -> Result<(), String> {
    let given = match task.get("Placement") {
        Some(v) => fields(
            v,
            "Spec.TaskTemplate.Placement",
            &["Constraints", "Preferences", "Platforms", "MaxReplicas"],
        )?
        .list("Constraints")?
        .to_vec(),
        None => vec![],
    };
    // More constraints only narrow where a server runs; the file's must all
    // be there.
    for wanted in &rule.constraints {
        if !given.iter().any(|c| c.as_str() == Some(wanted)) {
            return Err(format!(
                "Spec.TaskTemplate.Placement.Constraints lacks the file's {wanted:?}"
            ));
        }
    }
    Ok(())
}

fn networks(p: &SpawnerPolicy, task: &Fields<'_>) -> Result<Vec<Owned>, String> {
    let mut owned = vec![];
    for (i, n) in task.list("Networks")?.iter().enumerate() {
        let at = format!("Spec.TaskTemplate.Networks[{i}]");
        let n = fields(n, &at, &["Target", "Aliases"])?;
        n.empty("Aliases")?;
        let target = n.str("Target")?.unwrap_or_default();
        // The engine stores the network's ID: checked against its name.
        owned.push(Owned::reference(
            Kind::Networks,
            target,
            Want::Name(p.network.clone()),
        )?);
    }
    Ok(owned)
}

/// What the container spec holds that the server's kind decides, and
/// its references to check.
struct Container<'v> {
    refs: Vec<Owned>,
    image: &'v str,
    mounts: &'v [Value],
    mounts_at: String,
}

fn container_spec<'v>(p: &SpawnerPolicy, c: &'v Value) -> Result<Container<'v>, String> {
    let c = fields(
        c,
        "Spec.TaskTemplate.ContainerSpec",
        &[
            "Image",
            "Command",
            "Args",
            "Env",
            "Dir",
            "Mounts",
            "Configs",
            "Secrets",
            "Isolation",
            "Init",
            "StopGracePeriod",
            "StopSignal",
            "TTY",
            "OpenStdin",
            "ReadOnly",
            "Hostname",
            "Labels",
            "User",
            "CapabilityDrop",
            "DNSConfig",
        ],
    )?;
    let image = c.str("Image")?.unwrap_or_default();
    if !matches!(c.str("Isolation")?, None | Some("default" | "")) {
        return Err(format!("{} is not allowed", c.at("Isolation")));
    }
    c.empty("Labels")?;
    // The engine fills in an empty one, which an update sends back.
    c.empty("DNSConfig")?;
    if let Some(user) = c.str("User")? {
        if user != p.uid.to_string() {
            return Err(format!(
                "{} {user:?}: servers run as {}",
                c.at("User"),
                p.uid
            ));
        }
    }
    for item in c.list("Env")? {
        let key = item
            .as_str()
            .and_then(|s| s.split('=').next())
            .unwrap_or_default();
        if TOKEN_ENV.contains(&key) {
            return Err(format!(
                "{}: {key} is not allowed (the token is a Docker secret)",
                c.at("Env")
            ));
        }
    }
    let mut owned = refs(&c, Kind::Configs, &Want::SpecName(p.configs.clone()))?;
    let token = Want::Label(p.label.clone(), p.deployment.clone());
    owned.extend(refs(&c, Kind::Secrets, &token)?);
    Ok(Container {
        refs: owned,
        image,
        mounts: c.list("Mounts")?,
        mounts_at: c.at("Mounts"),
    })
}

/// Config or secret references: each by ID, checked against the engine;
/// files only (no runtime target).
fn refs(c: &Fields<'_>, kind: Kind, want: &Want) -> Result<Vec<Owned>, String> {
    let (key, id_key, name_key) = match kind {
        Kind::Configs => ("Configs", "ConfigID", "ConfigName"),
        Kind::Secrets => ("Secrets", "SecretID", "SecretName"),
        Kind::Services | Kind::Networks => return Err(format!("{kind:?} are not file references")),
    };
    let mut owned = vec![];
    for (i, r) in c.list(key)?.iter().enumerate() {
        let at = format!("{}[{i}]", c.at(key));
        let r = fields(r, &at, &[id_key, name_key, "File"])?;
        if r.get("File").is_none() {
            return Err(format!("{at}: only a file"));
        }
        let id = r.str(id_key)?.unwrap_or_default();
        owned.push(Owned::reference(kind, id, want.clone())?);
    }
    Ok(owned)
}
