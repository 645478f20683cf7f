//! The entry point for the fuzz target `guard_request` in `fuzz/`,
//! compiled only under `--cfg fuzzing` and in unit tests, which replay the
//! committed corpus through it. A panic is a finding.

use http::{Method, Uri};
use serde_json::Value;

use crate::json::{fold, parse_strict};
use crate::policy::{Policy, SpawnerPolicy, Verdict};
use crate::target::parse;

/// One request as the guard sees it: the first line `METHOD TARGET`, the
/// rest its body. What passes the shape check has no segment to resolve
/// and a method the API uses; a body parsed strictly serialises to JSON
/// that parses to the same value; the discovery policy allows only reads
/// without a body; the spawner policy allows a body only for the calls
/// that take one, and never one holding a key that reaches the node.
pub fn request(data: &[u8]) {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let Some((method, target)) = line.split_once(' ') else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), target.parse::<Uri>())
    else {
        return;
    };
    let json = parse_strict(body).ok();
    if let Some(v) = &json {
        let text =
            serde_json::to_vec(v).unwrap_or_else(|e| panic!("{v:?} does not serialise: {e}"));
        let again = parse_strict(&text).unwrap_or_else(|e| panic!("{v:?} reparsed: {e}"));
        assert_eq!(&again, v);
    }
    let Ok(call) = parse(&method, &uri) else {
        return;
    };
    assert!(
        call.segments
            .iter()
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['%', '/', '\\'])),
        "{target:?} → {:?}",
        call.segments
    );
    let policy = Policy::Discovery {
        service: "hub-hubgate".to_owned(),
    };
    if let Verdict::Allow(_) = policy.judge(&call, json.as_ref()) {
        assert!(matches!(call.method, Method::GET | Method::HEAD) && json.is_none());
    }
    let spawner = Policy::Spawner(Box::new(spawner_policy()));
    let allowed = !matches!(spawner.judge(&call, json.as_ref()), Verdict::Deny { .. });
    if let (true, Some(body)) = (allowed, &json) {
        let path = call.path();
        assert!(
            matches!(
                path.as_slice(),
                ["services", "create"] | ["services", _, "update"] | ["secrets", "create"]
            ),
            "a body allowed for {path:?}"
        );
        if let Some(key) = reaching_key(body) {
            panic!("the spawner allowed {key:?} in {body}");
        }
    }
}

/// A spawner policy like the one `hubgate deploy` generates.
fn spawner_policy() -> SpawnerPolicy {
    let json = r#"{"label": "l", "deployment": "d", "name_prefix": "jupyter-",
        "secret_prefix": "d-token-", "network": "n", "configs": ["c"],
        "uid": 1000, "volume": {"name": "d-user-{username}", "target": "/home",
        "driver": "local", "options": {"type": "none", "o": "bind",
        "device": "/srv/{username}"}, "labels": {"l": "d"}},
        "servers": [{"image": "i", "constraints": [], "limits": {}}]}"#;
    serde_json::from_str(json).unwrap_or_else(|e| panic!("the fuzz policy: {e}"))
}

/// A key (any case) anywhere in `v` that would give a container the node.
fn reaching_key(v: &Value) -> Option<String> {
    const REACHING: &[&str] = &[
        "privileged",
        "binds",
        "devices",
        "capabilityadd",
        "sysctls",
        "privileges",
        "bindoptions",
        "tmpfsoptions",
        "ports",
        "hostconfig",
        "global",
    ];
    match v {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let empty = matches!(v, Value::Null)
                || v.as_array().is_some_and(Vec::is_empty)
                || v.as_object().is_some_and(serde_json::Map::is_empty);
            let key = fold(k);
            if REACHING.contains(&key.as_str()) && (!empty || key == "global") {
                Some(k.clone())
            } else {
                reaching_key(v)
            }
        }),
        Value::Array(items) => items.iter().find_map(reaching_key),
        _ => None,
    }
}

#[cfg(test)]
mod replay {
    #[test]
    fn the_committed_corpus_passes() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/guard_request");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            super::request(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
    }
}
