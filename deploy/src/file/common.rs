//! Field types the deployment file's tables share: a leaf.

use serde::Deserialize;

use super::units::Size;

/// CPU and memory limits and reservations of a service's tasks.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Cores (fractions allowed).
    pub cpu_limit: Option<f64>,
    pub memory_limit: Option<Size>,
    pub cpu_reservation: Option<f64>,
    pub memory_reservation: Option<Size>,
}

/// serde's default for a flag that is on unless turned off.
pub(super) fn default_true() -> bool {
    true
}
