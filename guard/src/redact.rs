//! Filters on the engine's answers: environment values dropped from every
//! `Env` list (service specs, their previous specs, task specs, container
//! configs), a container's service label checked, and a node list cut to
//! the nodes' states.

use serde_json::{Value, json};

/// Drops every `KEY=value` entry of every `Env` list in `v` whose key is
/// not in `keep`; how many it dropped.
pub(crate) fn redact_env(v: &mut Value, keep: &[&str]) -> usize {
    match v {
        Value::Object(map) => {
            let mut dropped = 0;
            for (key, value) in map.iter_mut() {
                if key == "Env" {
                    if let Value::Array(items) = value {
                        let before = items.len();
                        items.retain(|item| {
                            item.as_str()
                                .and_then(|s| s.split_once('='))
                                .is_some_and(|(k, _)| keep.contains(&k))
                        });
                        dropped += before - items.len();
                    }
                } else {
                    dropped += redact_env(value, keep);
                }
            }
            dropped
        }
        Value::Array(items) => items.iter_mut().map(|i| redact_env(i, keep)).sum(),
        _ => 0,
    }
}

/// Cuts a node list to each node's `ID` and `Status.State`.
pub(crate) fn node_states(v: &mut Value) {
    let nodes = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let cut = nodes
        .iter()
        .map(|n| json!({"ID": n["ID"], "Status": {"State": n["Status"]["State"]}}))
        .collect();
    *v = Value::Array(cut);
}

/// The swarm service a container inspect's labels name.
pub(crate) fn container_service(inspect: &Value) -> Option<&str> {
    inspect["Config"]["Labels"]["com.docker.swarm.service.name"].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kept_environment_values_remain() {
        let mut services = serde_json::json!([{
            "Spec": {"TaskTemplate": {"ContainerSpec": {"Env": [
                "JUPYTERHUB_API_TOKEN=secret",
                "JPY_API_TOKEN=secret",
                "JUPYTERHUB_SERVICE_PREFIX=/user/alice/",
                "NOEQUALS",
            ]}}},
            "PreviousSpec": {"TaskTemplate": {"ContainerSpec": {"Env": ["JUPYTERHUB_API_TOKEN=old"]}}},
        }]);
        let dropped = redact_env(&mut services, &["JUPYTERHUB_SERVICE_PREFIX"]);
        assert_eq!(dropped, 4);
        let text = services.to_string();
        assert!(!text.contains("secret") && !text.contains("old"), "{text}");
        assert!(text.contains("JUPYTERHUB_SERVICE_PREFIX=/user/alice/"));
    }

    #[test]
    fn a_node_list_keeps_only_ids_and_states() {
        let mut nodes = json!([{
            "ID": "n1",
            "Spec": {"Labels": {"gpu": "yes"}, "Role": "manager"},
            "Description": {"Hostname": "host1", "TLSInfo": {"TrustRoot": "cert"}},
            "Status": {"State": "down", "Addr": "10.0.0.5"},
            "ManagerStatus": {"Addr": "10.0.0.5:2377"},
        }]);
        node_states(&mut nodes);
        assert_eq!(nodes, json!([{"ID": "n1", "Status": {"State": "down"}}]));
        let mut not_a_list = json!({"message": "x"});
        node_states(&mut not_a_list);
        assert_eq!(not_a_list, json!([]));
    }
}
