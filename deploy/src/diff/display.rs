//! A plan as `plan` prints it: each step a line (`+` create, `~` change,
//! `-` remove, `-/+` made anew, `>` a move), the fields and settings that
//! change, and the counts.

use std::fmt;

use super::{FieldChange, Plan, Step};
use crate::model::{Role, SecretData, UPDATE_MONITOR_SECS};

/// `field: from -> to`, or for lists of several items the items that go
/// and come.
fn write_change(f: &mut fmt::Formatter<'_>, c: &FieldChange) -> fmt::Result {
    if !c.from.contains('\n') && !c.to.contains('\n') {
        return writeln!(f, "    {}: {} -> {}", c.field, c.from, c.to);
    }
    writeln!(f, "    {}:", c.field)?;
    let (from, to): (Vec<&str>, Vec<&str>) = (c.from.lines().collect(), c.to.lines().collect());
    for item in from.iter().filter(|i| !to.contains(i)) {
        writeln!(f, "      - {item}")?;
    }
    for item in to.iter().filter(|i| !from.contains(i)) {
        writeln!(f, "      + {item}")?;
    }
    Ok(())
}

impl Plan {
    /// One step as `plan` shows it.
    fn write_step(&self, f: &mut fmt::Formatter<'_>, step: &Step) -> fmt::Result {
        match step {
            Step::CreateNetwork(n) => writeln!(
                f,
                "+ network {} (overlay, attachable{}{})",
                n.name,
                n.subnet
                    .as_ref()
                    .map_or(String::new(), |s| format!(", subnet {s}")),
                if n.encrypted { ", encrypted" } else { "" }
            )?,
            Step::ReplaceNetwork { want, why } => writeln!(
                f,
                "-/+ network {} (made anew: {}; the deployment's services are removed and made again)",
                want.name,
                why.join(", ")
            )?,
            Step::CreateConfig(c) => {
                writeln!(f, "+ config {c}")?;
                if c.role == Role::HubConfig && !self.hub_settings.is_empty() {
                    writeln!(f, "    hub settings that change:")?;
                    for (sign, line) in &self.hub_settings {
                        writeln!(f, "      {sign} {line}")?;
                    }
                }
            }
            Step::CreateSecret(s) => writeln!(
                f,
                "+ secret {s}{}",
                if s.data == SecretData::Generated {
                    " (random)"
                } else {
                    ""
                }
            )?,
            Step::CreateService(s) => writeln!(f, "+ service {} ({})", s.name, s.image)?,
            Step::UpdateService { want, changes } => {
                writeln!(f, "~ service {}", want.name)?;
                for c in changes {
                    write_change(f, c)?;
                }
                if want.start_first {
                    writeln!(
                        f,
                        "    (new tasks start before the old ones stop: the old keep serving until the new run)"
                    )?;
                }
            }
            Step::ReplaceService { want, why } => writeln!(
                f,
                "-/+ service {} (removed and made anew: {why}; it is down in between)",
                want.name
            )?,
            Step::MigrateHubData(m) => {
                writeln!(
                    f,
                    "> move the hub's database from the volume {} on {} onto the storage (.hubgate/hub/), and its cookie secret into the secret {}",
                    m.volume, m.node, m.cookie_secret
                )?;
                writeln!(
                    f,
                    "    the old hub stops first; a one-off job of hubgate's image on {} copies the files (the volume stays, untouched); users, tokens, running servers and sessions are kept",
                    m.node
                )?;
            }
            Step::RemoveService(s) => writeln!(f, "- service {s}")?,
            Step::RemoveConfig(c) => writeln!(f, "- config {c}")?,
            Step::RemoveSecret(s) => writeln!(f, "- secret {s}")?,
            Step::PruneVolumes { why, .. } => {
                writeln!(
                    f,
                    "- volumes on every node that are not the current storage's (a one-off job of hubgate's image on each node; one in use by a running server stays)"
                )?;
                for w in why {
                    writeln!(f, "    {w}")?;
                }
            }
            Step::RemoveNetwork(n) => writeln!(f, "- network {n}")?,
        }
        Ok(())
    }
}

impl Plan {
    /// What `apply` does after every plan: the user servers' images
    /// looked for on the nodes (nodes may have joined since).
    fn write_image_checks(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.image_checks.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "  then: look for the user servers' images on the nodes their servers may run on (a one-off job each, running `true`): {}",
            self.image_checks.join(", ")
        )
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "! {p}")?;
        }
        if self.steps.is_empty() {
            writeln!(f, "No changes: the swarm matches the deployment file.")?;
            return self.write_image_checks(f);
        }
        for step in &self.steps {
            self.write_step(f, step)?;
        }
        if self
            .steps
            .iter()
            .any(|s| matches!(s, Step::UpdateService { .. }))
        {
            writeln!(
                f,
                "  then: wait for the services; a service whose new tasks fail within {UPDATE_MONITOR_SECS} s is rolled back by the swarm to its last working spec (apply says so and fails)"
            )?;
        }
        self.write_image_checks(f)?;
        let count = |p: fn(&Step) -> bool| self.steps.iter().filter(|s| p(s)).count();
        writeln!(
            f,
            "{} to create, {} to change, {} to remove.",
            count(|s| matches!(
                s,
                Step::CreateNetwork(_)
                    | Step::CreateConfig(_)
                    | Step::CreateSecret(_)
                    | Step::CreateService(_)
            )),
            count(|s| matches!(
                s,
                Step::UpdateService { .. }
                    | Step::ReplaceService { .. }
                    | Step::ReplaceNetwork { .. }
                    | Step::MigrateHubData(_)
            )),
            count(|s| matches!(
                s,
                Step::RemoveService(_)
                    | Step::RemoveConfig(_)
                    | Step::RemoveSecret(_)
                    | Step::PruneVolumes { .. }
                    | Step::RemoveNetwork(_)
            )),
        )
    }
}
