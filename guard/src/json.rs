//! JSON as the Docker daemon reads it, without its ambiguities. Go's
//! decoder matches a struct's keys case-insensitively (folding `ſ` to `s`
//! and the Kelvin sign to `k`) and keeps the last of duplicate keys, so
//! `{"Mounts": [], "mounts": [{...}]}` means the second one. The guard
//! refuses any object holding two keys that fold to the same, judges what
//! is left, and forwards exactly what it judged (re-serialised).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as JSON, refusing keys the daemon would confuse.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| e.to_string())
}

/// A key as Go's decoder compares it.
pub(crate) fn fold(key: &str) -> String {
    key.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\u{17f}' { 's' } else { c })
        .collect()
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = vec![];
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(fold(&key)) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} twice (keys are matched without case)"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_the_daemon_would_merge_are_refused() {
        for body in [
            r#"{"Mounts": [], "mounts": [{"Type": "bind", "Source": "/"}]}"#,
            r#"{"Name": "a", "Name": "b"}"#,
            r#"{"TaskTemplate": {"ContainerSpec": {"Image": "a", "IMAGE": "b"}}}"#,
            r#"[{"Privileged": false, "privileged": true}]"#,
            "{\"Mask\": 1, \"Ma\u{17f}k\": 2}",
            "{\"Kind\": 1, \"\u{212a}ind\": 2}",
        ] {
            let e = parse_strict(body.as_bytes()).unwrap_err();
            assert!(e.contains("twice"), "{body}: {e}");
        }
    }

    #[test]
    fn plain_json_is_kept_as_written() {
        let v =
            parse_strict(br#"{"Name": "x", "Labels": {"a": "1", "b": "2"}, "N": [1, 2.5, null]}"#)
                .unwrap();
        assert_eq!(v["Labels"]["b"], "2");
        assert_eq!(v["N"][1], 2.5);
        assert!(parse_strict(b"{\"a\": 1} trailing").is_err());
        assert!(parse_strict(b"{\"a\": \xff}").is_err());
    }
}
