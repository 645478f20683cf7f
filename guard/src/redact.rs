//! Filters on the engine's answers: environment values dropped from every
//! `Env` list (service specs, their previous specs, task specs, container
//! configs), and a container's service label checked.

use serde_json::Value;

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
}
