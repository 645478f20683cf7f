//! What a guarded socket lets through. A [`Policy`] judges each call (its
//! shape already checked, its JSON body parsed strictly) and says what to
//! do with the engine's answer: pass it on, or filter it first.

mod discovery;
mod fields;
mod spawner;

use serde::Deserialize;
use serde_json::Value;

use crate::target::Call;

pub use spawner::{DataMount, Limits, ServerRule, SpawnerPolicy, VolumePolicy};

/// The policy of one guarded socket, as the policy file names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Policy {
    /// hubgate's swarm discovery: reads only, environment redacted, its
    /// own containers only (those of `service`).
    Discovery { service: String },
    /// The hub's spawner: its user servers and their token secrets only.
    Spawner(Box<SpawnerPolicy>),
}

/// What the guard does with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it; treat the answer as `Filter` says.
    Allow(Filter),
    /// Forward it only once the engine shows each object is one the policy
    /// owns (see [`Owned::subject`] for one the engine does not find).
    AllowIfOwned(Vec<Owned>, Filter),
    /// Answer 403 naming the rule.
    Deny { rule: &'static str, why: String },
}

/// How an allowed call's successful answer reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// As the engine sent it (streams: events, logs).
    Pass,
    /// With every environment value dropped but the ones named.
    RedactEnv(&'static [&'static str]),
    /// A container's inspect, only when it belongs to this service (by its
    /// swarm label), with its environment dropped.
    OwnContainer(String),
    /// The node list cut to each node's ID and state (`Status.State`):
    /// whether a node is up, nothing of its addresses, labels or engine.
    NodeStates,
}

impl Policy {
    /// Judges a call and its body (`None`: none sent).
    pub fn judge(&self, call: &Call, body: Option<&Value>) -> Verdict {
        match self {
            Policy::Discovery { service } => discovery::judge(service, call, body),
            Policy::Spawner(p) => spawner::judge(p, call, body),
        }
    }

    /// The policy's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Discovery { .. } => "discovery",
            Policy::Spawner(_) => "spawner",
        }
    }
}

/// An object a call names or refers to, which must be the policy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// Its inspect path without the version (`services/<id or name>`).
    pub path: String,
    pub want: Want,
    /// The object the call is about (a service to inspect or remove), not
    /// one its body refers to: when the engine does not find it, the call
    /// gets the engine's status (a 404 says a server is gone, as it would
    /// have); a missing reference is a refusal.
    pub subject: bool,
}

/// The kinds of object a spawner call may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Services,
    Secrets,
    Configs,
    Networks,
}

impl Kind {
    /// Its API path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::Secrets => "secrets",
            Kind::Configs => "configs",
            Kind::Networks => "networks",
        }
    }
}

/// What its inspect must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `Spec.Labels[key] == value`.
    Label(String, String),
    /// `Spec.Name` one of these.
    SpecName(Vec<String>),
    /// `Name` this (networks).
    Name(String),
}

impl Owned {
    /// The object `id` of `kind` the call is about; an ID or name that is
    /// not one plain path segment is refused.
    pub fn subject(kind: Kind, id: &str, want: Want) -> Result<Self, String> {
        Self::new(kind, id, want, true)
    }

    /// An object of `kind` the call's body refers to.
    pub fn reference(kind: Kind, id: &str, want: Want) -> Result<Self, String> {
        Self::new(kind, id, want, false)
    }

    fn new(kind: Kind, id: &str, want: Want, subject: bool) -> Result<Self, String> {
        let kind = kind.segment();
        let plain = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && id != "."
            && id != "..";
        if !plain {
            return Err(format!(
                "the {kind} reference {id:?} is not a plain ID or name"
            ));
        }
        Ok(Owned {
            path: format!("{kind}/{id}"),
            want,
            subject,
        })
    }

    /// Whether `inspect` (the engine's answer for `path`) shows it owned.
    pub fn holds(&self, inspect: &Value) -> bool {
        match &self.want {
            Want::Label(k, v) => inspect["Spec"]["Labels"][k].as_str() == Some(v),
            Want::SpecName(names) => inspect["Spec"]["Name"]
                .as_str()
                .is_some_and(|n| names.iter().any(|w| w == n)),
            Want::Name(name) => inspect["Name"].as_str() == Some(name),
        }
    }
}

fn deny(rule: &'static str, why: impl Into<String>) -> Verdict {
    Verdict::Deny {
        rule,
        why: why.into(),
    }
}
