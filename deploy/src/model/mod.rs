//! The objects a deployment wants, in a plain form that can be compared
//! field by field with what the engine reports: services, networks,
//! configs and secrets. `engine::service_spec` turns a service into
//! bollard's spec and back.

mod labels;

use std::collections::BTreeMap;

pub use labels::{DEPLOY_LABEL, ROLE_LABEL, Role, SERVER_LABEL, SPAWNED_LABEL, STORAGE_LABEL};

/// How long the swarm watches an updated task before it counts the update
/// a success: a task that fails within it (a port already taken, a hub
/// whose new configuration does not start) rolls the service back.
pub const UPDATE_MONITOR_SECS: u64 = 10;

/// How many tasks a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    Global,
}

/// A mount of a service's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountWant {
    /// A bind mount of a node's path, else a named volume.
    pub bind: bool,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// The `local` driver's options (`type`, `o`, `device`) for a volume
    /// that carries them in the mount, so it appears on any node.
    pub driver_opts: BTreeMap<String, String>,
    /// Labels of the volume when a task creates it.
    pub labels: BTreeMap<String, String>,
}

/// A config or secret a service's tasks see as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The config's or secret's name.
    pub name: String,
    /// The path inside the container.
    pub target: String,
}

/// CPU (in nano-cores) and memory (bytes) limits and reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourcesWant {
    pub cpu_limit: Option<i64>,
    pub memory_limit: Option<i64>,
    pub cpu_reservation: Option<i64>,
    pub memory_reservation: Option<i64>,
}

/// A service as the deployment wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWant {
    pub name: String,
    pub image: String,
    /// The command, in place of the image's entrypoint (empty: the
    /// image's).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `uid[:gid]` the container runs as; empty: the image's.
    pub user: String,
    pub mode: Mode,
    pub constraints: Vec<String>,
    /// At most this many tasks per node (0: no limit).
    pub max_per_node: u64,
    pub mounts: Vec<MountWant>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    /// Ports published in host mode, as (published, target).
    pub ports: Vec<(u16, u16)>,
    /// DNS round robin instead of a virtual IP.
    pub dnsrr: bool,
    /// Network names.
    pub networks: Vec<String>,
    pub resources: ResourcesWant,
    /// Start the new task before stopping the old one on this update: the
    /// plan's choice for one update (see `diff`), not compared.
    pub start_first: bool,
    /// Whether the tasks get the hash of the compared fields in
    /// [`SPEC_HASH_ENV`] (the hub's lease hands over to a task of a new
    /// spec first). Derived, so not compared itself.
    pub spec_hash: bool,
    /// Seconds between updating two tasks.
    pub update_delay_secs: u64,
    /// Seconds a task has to stop before it is killed.
    pub stop_grace_secs: u64,
    /// Linux capabilities added to the engine's default set
    /// (`CAP_NET_ADMIN`); none for every service but the metadata block.
    pub capabilities: Vec<String>,
    /// The health check's command (`CMD` form, without the `CMD`); empty:
    /// the image's own; [`NO_HEALTHCHECK`] alone: none. Set on every create and update, not compared: the
    /// engine returns it under `Healthcheck`, a key bollard does not read
    /// (it writes `HealthCheck`, which the engine folds), so it cannot be
    /// read back. It changes with the image it runs.
    pub healthcheck: Vec<String>,
}

/// An image user servers run, and where its servers may be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerImage {
    pub image: String,
    pub constraints: Vec<String>,
}

/// A [`ServiceWant::healthcheck`] of this one word turns the image's
/// health check off.
pub const NO_HEALTHCHECK: &str = "NONE";

/// The environment variable a task finds its spec's hash in (see
/// [`ServiceWant::spec_hash`]).
pub const SPEC_HASH_ENV: &str = "HUBGATE_SPEC";

impl ServiceWant {
    /// Each compared field, rendered as text (a list: one item per line):
    /// two services are the same when every field is.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        // List items one per line, so a change can name the items it adds
        // and removes.
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "(none)".to_owned()
            } else {
                items.join("\n")
            }
        };
        let map = |m: &BTreeMap<String, String>| {
            list(m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        };
        let cpu = |n: Option<i64>| n.map_or("(none)".to_owned(), |n| format!("{}", n as f64 / 1e9));
        let mem = |n: Option<i64>| n.map_or("(none)".to_owned(), |n| format!("{n} bytes"));
        let files = |f: &[FileRef]| {
            list(
                f.iter()
                    .map(|f| format!("{} at {}", f.name, f.target))
                    .collect(),
            )
        };
        vec![
            ("image", self.image.clone()),
            (
                "command",
                list(self.command.iter().map(|a| format!("{a:?}")).collect()),
            ),
            (
                "args",
                list(self.args.iter().map(|a| format!("{a:?}")).collect()),
            ),
            ("env", map(&self.env)),
            ("labels", map(&self.labels)),
            (
                "user",
                if self.user.is_empty() {
                    "(image's)".to_owned()
                } else {
                    self.user.clone()
                },
            ),
            (
                "mode",
                match self.mode {
                    Mode::Global => "global".to_owned(),
                    Mode::Replicated(n) => format!("replicated {n}"),
                },
            ),
            ("constraints", list(self.constraints.clone())),
            ("max replicas per node", self.max_per_node.to_string()),
            ("mounts", list(self.mounts.iter().map(mount_text).collect())),
            ("secrets", files(&self.secrets)),
            ("configs", files(&self.configs)),
            (
                "ports",
                list(
                    self.ports
                        .iter()
                        .map(|(p, t)| format!("{p}->{t} (host)"))
                        .collect(),
                ),
            ),
            (
                "endpoint mode",
                if self.dnsrr { "dnsrr" } else { "vip" }.to_owned(),
            ),
            ("networks", list(self.networks.clone())),
            ("capabilities added", list(self.capabilities.clone())),
            ("cpu limit", cpu(self.resources.cpu_limit)),
            ("memory limit", mem(self.resources.memory_limit)),
            ("cpu reservation", cpu(self.resources.cpu_reservation)),
            ("memory reservation", mem(self.resources.memory_reservation)),
            ("update delay", format!("{} s", self.update_delay_secs)),
            ("stop grace period", format!("{} s", self.stop_grace_secs)),
        ]
    }
}

fn mount_text(m: &MountWant) -> String {
    let mut s = format!(
        "{} {} -> {}{}",
        if m.bind { "bind" } else { "volume" },
        m.source,
        m.target,
        if m.read_only { " (ro)" } else { "" }
    );
    if !m.driver_opts.is_empty() {
        let opts: Vec<String> = m
            .driver_opts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" [{}]", opts.join(" ")));
    }
    s
}

/// The overlay network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkWant {
    pub name: String,
    pub subnet: Option<String>,
    pub encrypted: bool,
}

/// Where a secret's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretData {
    /// These bytes (a file the operator named); the name carries a hash
    /// of them, so new bytes make a new secret.
    Bytes(Vec<u8>),
    /// Random bytes made once, when the secret does not exist yet (the
    /// proxy token): kept for as long as it exists.
    Generated,
    /// A secret the operator made; `apply` only checks it exists.
    External,
}

/// A Docker secret (or, with `config`, a Docker config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWant {
    pub name: String,
    pub data: SecretData,
    /// What it is for (the role label).
    pub role: Role,
}

impl std::fmt::Display for BlobWant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}
