//! hubgate's swarm discovery: the reads it makes and nothing else. Service
//! and task specs come back without environment values (user servers'
//! tokens sat there), except the two discovery routes user servers by.

use http::Method;
use serde_json::Value;

use super::{Filter, Verdict, deny};
use crate::target::Call;

/// The environment values discovery may see.
pub(super) const KEPT_ENV: &[&str] = &["JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_SERVICE_URL"];

pub(super) fn judge(service: &str, call: &Call, body: Option<&Value>) -> Verdict {
    if !matches!(call.method, Method::GET | Method::HEAD) {
        return deny("discovery.read-only", "discovery only reads");
    }
    if body.is_some() {
        return deny("discovery.read-only", "a read with a body");
    }
    let path = call.path();
    // HEAD only where an answer needs no filter: a filtered answer is read
    // whole, and a HEAD's has no body to read.
    if call.method == Method::HEAD && path != ["_ping"] {
        return deny("discovery.read-only", "HEAD is for /_ping only");
    }
    match path.as_slice() {
        ["_ping"] | ["version"] | ["events"] => Verdict::Allow(Filter::Pass),
        ["services"] | ["services", _] | ["tasks"] | ["tasks", _] => {
            Verdict::Allow(Filter::RedactEnv(KEPT_ENV))
        }
        ["networks", _] => Verdict::Allow(Filter::Pass),
        ["containers", _, "json"] => Verdict::Allow(Filter::OwnContainer(service.to_owned())),
        _ => deny(
            "discovery.paths",
            "discovery reads the version, services, tasks, networks, its own containers and events only",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse;

    fn verdict(method: &str, target: &str) -> Verdict {
        let call = parse(&method.parse().unwrap(), &target.parse().unwrap()).unwrap();
        judge("hub-hubgate", &call, None)
    }

    #[test]
    fn discovery_reads_pass_and_nothing_else() {
        assert!(matches!(verdict("HEAD", "/_ping"), Verdict::Allow(_)));
        for target in [
            "/_ping",
            "/version",
            "/v1.41/services",
            "/v1.41/services/abc",
            "/v1.41/tasks?filters=%7B%7D",
            "/v1.41/networks/n1?verbose=true&scope=swarm",
            "/v1.41/events?filters=%7B%7D",
            "/v1.41/containers/me/json",
        ] {
            assert!(
                matches!(verdict("GET", target), Verdict::Allow(_)),
                "{target}"
            );
        }
        for (method, target) in [
            ("POST", "/v1.41/containers/create"),
            ("POST", "/v1.41/services/create"),
            ("DELETE", "/v1.41/services/abc"),
            ("POST", "/v1.41/volumes/create"),
            ("GET", "/v1.41/swarm"),
            ("GET", "/v1.41/secrets"),
            ("GET", "/v1.41/configs/x"),
            ("GET", "/v1.41/containers/json"),
            ("GET", "/v1.41/containers/x/archive"),
            ("GET", "/v1.41/containers/x/logs"),
            ("GET", "/v1.41/nodes"),
            ("POST", "/v1.41/swarm/leave"),
            ("GET", "/v1.41/images/json"),
            ("HEAD", "/v1.41/services"),
            ("HEAD", "/v1.41/containers/x/json"),
            ("POST", "/v1.41/plugins/pull"),
        ] {
            assert!(
                matches!(verdict(method, target), Verdict::Deny { .. }),
                "{method} {target}"
            );
        }
    }
}
