//! A user server's resources: no more than the deployment file gives one
//! kind of server (its limits present, nothing where it sets no value),
//! generic resources only of the kinds and counts it names.

use super::ServerRule;
use crate::policy::fields::{Fields, fields};

pub(super) fn check(rule: &ServerRule, task: &Fields<'_>) -> Result<(), String> {
    let p = rule;
    let Some(resources) = task.get("Resources") else {
        if p.limits.cpu_limit.is_some() || p.limits.memory_limit.is_some() {
            return Err(format!(
                "{}: the file's limits are missing",
                task.at("Resources")
            ));
        }
        return Ok(());
    };
    let r = fields(
        resources,
        &task.at("Resources"),
        &["Limits", "Reservations"],
    )?;
    if let Some(limits) = r.get("Limits") {
        let l = fields(
            limits,
            &r.at("Limits"),
            &["NanoCPUs", "MemoryBytes", "Pids"],
        )?;
        within(&l, "NanoCPUs", p.limits.cpu_limit, true)?;
        within(&l, "MemoryBytes", p.limits.memory_limit, true)?;
        l.uint("Pids")?;
    } else if p.limits.cpu_limit.is_some() || p.limits.memory_limit.is_some() {
        return Err(format!("{}: the file's limits are missing", r.at("Limits")));
    }
    if let Some(reservations) = r.get("Reservations") {
        let at = r.at("Reservations");
        let l = fields(
            reservations,
            &at,
            &["NanoCPUs", "MemoryBytes", "GenericResources"],
        )?;
        within(&l, "NanoCPUs", p.limits.cpu_reservation, false)?;
        within(&l, "MemoryBytes", p.limits.memory_reservation, false)?;
        generic(rule, &l)?;
    }
    Ok(())
}

/// `key` no more than `most`; `required`: a limit the file sets must be
/// there (none is no limit at all).
fn within(l: &Fields<'_>, key: &str, most: Option<u64>, required: bool) -> Result<(), String> {
    match (l.uint(key)?, most) {
        (None | Some(0), Some(most)) if required => Err(format!(
            "{} is missing: the file's limit is {most}",
            l.at(key)
        )),
        (None | Some(0), _) => Ok(()),
        (Some(n), Some(most)) if n <= most => Ok(()),
        (Some(n), Some(most)) => Err(format!("{} {n} is over the file's {most}", l.at(key))),
        (Some(n), None) => Err(format!("{} {n}: the file sets none", l.at(key))),
    }
}

/// Each generic resource reserved: a discrete one the rule names, no more
/// of it than the rule gives.
fn generic(rule: &ServerRule, l: &Fields<'_>) -> Result<(), String> {
    for (i, g) in l.list("GenericResources")?.iter().enumerate() {
        let at = format!("{}[{i}]", l.at("GenericResources"));
        let g = fields(g, &at, &["DiscreteResourceSpec"])?;
        let Some(spec) = g.get("DiscreteResourceSpec") else {
            return Err(format!("{at}: only a discrete resource"));
        };
        let d = fields(spec, &g.at("DiscreteResourceSpec"), &["Kind", "Value"])?;
        let kind = d.str("Kind")?.unwrap_or_default();
        let value = d.uint("Value")?.unwrap_or(0);
        match rule.generic.get(kind) {
            Some(&most) if value <= most => {}
            Some(most) => {
                return Err(format!(
                    "{} {value} {kind}: the file gives {most}",
                    d.at("Value")
                ));
            }
            None => return Err(format!("{} {kind:?}: the file gives none", d.at("Kind"))),
        }
    }
    Ok(())
}
