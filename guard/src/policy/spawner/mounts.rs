//! A user server's mounts: its own volume, made by the engine's local
//! driver with exactly the deployment's options for that user (options
//! that name another device, or bind a host path, are refused), and
//! nothing else.

use super::SpawnerPolicy;
use crate::policy::fields::{Fields, fields};

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

pub(super) fn check(p: &SpawnerPolicy, c: &Fields<'_>) -> Result<(), String> {
    let mounts = c.list("Mounts")?;
    if mounts.len() > 1 {
        return Err(format!(
            "{}: a user server mounts its own volume only",
            c.at("Mounts")
        ));
    }
    for (i, m) in mounts.iter().enumerate() {
        let at = format!("{}[{i}]", c.at("Mounts"));
        one(p, &at, m).map_err(|why| format!("{at}: {why}"))?;
    }
    Ok(())
}

fn one(p: &SpawnerPolicy, at: &str, m: &serde_json::Value) -> Result<(), String> {
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
    let source = m.str("Source")?.unwrap_or_default();
    let Some(user) = volume_user(p, source) else {
        return Err(format!("{source:?} is not a user volume's name"));
    };
    if m.str("Target")? != Some(p.volume.target.as_str()) {
        return Err(format!("mounted elsewhere than {}", p.volume.target));
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
    let labels = options.string_map("Labels")?;
    let want_labels: Vec<(&str, &str)> = p
        .volume
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !same(&labels, &want_labels) {
        return Err("labels other than the deployment's user volumes'".to_owned());
    }
    let Some(driver) = options.get("DriverConfig") else {
        return Err("no DriverConfig".to_owned());
    };
    let driver = fields(driver, &options.at("DriverConfig"), &["Name", "Options"])?;
    if driver.str("Name")? != Some(p.volume.driver.as_str()) {
        return Err(format!("a driver other than {:?}", p.volume.driver));
    }
    let given = driver.string_map("Options")?;
    let wanted: Vec<(String, String)> = p
        .volume
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("{username}", user)))
        .collect();
    let wanted: Vec<(&str, &str)> = wanted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !same(&given, &wanted) {
        return Err(format!(
            "driver options other than the deployment's for {user}"
        ));
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
