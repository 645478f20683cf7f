//! What a guarded socket lets through. A [`Policy`] judges each call (its
//! shape already checked, its JSON body parsed strictly) and says what to
//! do with the engine's answer: pass it on, or filter it first.

mod discovery;

use serde::Deserialize;
use serde_json::Value;

use crate::target::Call;

/// The policy of one guarded socket, as the policy file names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Policy {
    /// hubgate's swarm discovery: reads only, environment redacted, its
    /// own containers only (those of `service`).
    Discovery { service: String },
}

/// What the guard does with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it; treat the answer as `Filter` says.
    Allow(Filter),
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
}

impl Policy {
    /// Judges a call and its body (`None`: none sent).
    pub fn judge(&self, call: &Call, body: Option<&Value>) -> Verdict {
        match self {
            Policy::Discovery { service } => discovery::judge(service, call, body),
        }
    }

    /// The policy's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Discovery { .. } => "discovery",
        }
    }
}

fn deny(rule: &'static str, why: impl Into<String>) -> Verdict {
    Verdict::Deny {
        rule,
        why: why.into(),
    }
}
