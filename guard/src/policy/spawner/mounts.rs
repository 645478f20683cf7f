//! A user server's mounts: its own volume, made by the engine's local
//! driver with exactly the deployment's options for that user (options
//! that name another device, or bind a host path, are refused), and the
//! shared data volumes of its kind of server, each exactly as the file
//! makes it (read-only where the file says so); nothing else.

use serde_json::Value;

use super::{DataMount, ServerRule, SpawnerPolicy};
use crate::policy::fields::fields;

/// The characters of a user's escaped name (JupyterHub's spawners escape
/// everything else): nothing that could climb out of a path.
fn escaped(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The user a volume name is for, when it is a user volume's name.
fn volume_user<'a>(p: &SpawnerPolicy, source: &'a str) -> Option<&'a str> {
    let (before, after) = p.volume.name.split_once("{username}")?;
    let user = source.strip_prefix(before)?.strip_suffix(after)?;
    escaped(user).then_some(user)
}

/// What one mount must be: every field the engine reads.
struct Wanted<'a> {
    target: &'a str,
    read_only: bool,
    driver: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    options: Vec<(String, String)>,
}

/// Checks the container's `Mounts` (`at` names them) for one kind of
/// server.
pub(super) fn check(
    p: &SpawnerPolicy,
    rule: &ServerRule,
    at: &str,
    mounts: &[Value],
) -> Result<(), String> {
    let mut users = 0;
    let mut data: Vec<&str> = vec![];
    for (i, m) in mounts.iter().enumerate() {
        let at = format!("{at}[{i}]");
        if key_of(m, "Type") != Some("volume") {
            return Err(format!(
                "{at}: only a volume (no bind, tmpfs or other mount)"
            ));
        }
        let source = key_of(m, "Source").unwrap_or_default();
        let wanted = if let Some(user) = volume_user(p, source) {
            users += 1;
            user_volume(p, user)
        } else if let Some(d) = rule.mounts.iter().find(|d| d.source == source) {
            if data.contains(&source) {
                return Err(format!("{at}: {source:?} mounted twice"));
            }
            data.push(source);
            data_volume(d)
        } else {
            return Err(format!(
                "{at}: {source:?} is neither a user volume nor one of this server's data volumes"
            ));
        };
        if users > 1 {
            return Err(format!("{at}: a second user volume"));
        }
        one(&at, m, &wanted).map_err(|why| format!("{at}: {why}"))?;
    }
    Ok(())
}

/// A mount's string field, its key matched without case as the daemon
/// does (the parse refused keys equal but for case).
fn key_of<'v>(m: &'v Value, key: &str) -> Option<&'v str> {
    m.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

fn user_volume<'a>(p: &'a SpawnerPolicy, user: &str) -> Wanted<'a> {
    Wanted {
        target: &p.volume.target,
        read_only: false,
        driver: &p.volume.driver,
        labels: pairs(&p.volume.labels),
        options: p
            .volume
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{username}", user)))
            .collect(),
    }
}

fn data_volume(d: &DataMount) -> Wanted<'_> {
    Wanted {
        target: &d.target,
        read_only: d.read_only,
        driver: &d.driver,
        labels: pairs(&d.labels),
        options: d
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<(&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn one(at: &str, m: &Value, want: &Wanted<'_>) -> Result<(), String> {
    let m = fields(
        m,
        at,
        &[
            "Type",
            "Source",
            "Target",
            "ReadOnly",
            "Consistency",
            "VolumeOptions",
        ],
    )?;
    if m.str("Type")? != Some("volume") {
        return Err("only a volume (no bind, tmpfs or other mount)".to_owned());
    }
    if m.str("Target")? != Some(want.target) {
        return Err(format!("mounted elsewhere than {}", want.target));
    }
    let read_only = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
    if want.read_only && !read_only {
        return Err("not read-only: the file mounts it read-only".to_owned());
    }
    let Some(options) = m.get("VolumeOptions") else {
        return Err(
            "no VolumeOptions: the volume's driver options are the deployment's".to_owned(),
        );
    };
    let options = fields(
        options,
        &m.at("VolumeOptions"),
        &["NoCopy", "Labels", "DriverConfig"],
    )?;
    if !same(&options.string_map("Labels")?, &want.labels) {
        return Err("labels other than the deployment's for this volume".to_owned());
    }
    let Some(driver) = options.get("DriverConfig") else {
        return Err("no DriverConfig".to_owned());
    };
    let driver = fields(driver, &options.at("DriverConfig"), &["Name", "Options"])?;
    if driver.str("Name")? != Some(want.driver) {
        return Err(format!("a driver other than {:?}", want.driver));
    }
    let wanted: Vec<(&str, &str)> = want
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !same(&driver.string_map("Options")?, &wanted) {
        return Err("driver options other than the deployment's for this volume".to_owned());
    }
    Ok(())
}

/// Two maps hold the same pairs.
fn same(a: &[(&str, &str)], b: &[(&str, &str)]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}
