//! Reading a JSON body as the daemon does: keys matched without case (the
//! strict parse already refused two keys that fold to the same), every key
//! one the policy knows, values of the type the daemon expects.

use serde_json::{Map, Value};

use crate::json::fold;

/// The fields of `v` (an object), each under its canonical name from
/// `known`; an error naming `at` and the first key that is not known.
/// A null is as good as absent (the daemon reads it as the zero value;
/// docker-py sends `"Mode": null`).
pub(super) fn fields<'v>(
    v: &'v Value,
    at: &str,
    known: &[&'static str],
) -> Result<Fields<'v>, String> {
    let map = object(v, at)?;
    let mut out = vec![];
    for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
        let folded = fold(key);
        let Some(name) = known.iter().find(|k| fold(k) == folded) else {
            return Err(format!("{at}.{key} is not allowed"));
        };
        out.push((*name, value));
    }
    Ok(Fields {
        at: at.to_owned(),
        items: out,
    })
}

/// An object's fields by canonical name.
pub(super) struct Fields<'v> {
    at: String,
    items: Vec<(&'static str, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The value of `name`, when present and not null.
    pub(super) fn get(&self, name: &str) -> Option<&'v Value> {
        self.items.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Where `name` is, for messages.
    pub(super) fn at(&self, name: &str) -> String {
        format!("{}.{name}", self.at)
    }

    /// `name` as a string, when present.
    pub(super) fn str(&self, name: &str) -> Result<Option<&'v str>, String> {
        self.get(name)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("{} is not a string", self.at(name)))
            })
            .transpose()
    }

    /// `name` as a whole number, when present.
    pub(super) fn uint(&self, name: &str) -> Result<Option<u64>, String> {
        self.get(name)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| format!("{} is not a whole number", self.at(name)))
            })
            .transpose()
    }

    /// `name` as a list, empty when absent.
    pub(super) fn list(&self, name: &str) -> Result<&'v [Value], String> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(format!("{} is not a list", self.at(name))),
        }
    }

    /// `name` as a map of strings, empty when absent.
    pub(super) fn string_map(&self, name: &str) -> Result<Vec<(&'v str, &'v str)>, String> {
        let Some(v) = self.get(name) else {
            return Ok(vec![]);
        };
        let at = self.at(name);
        object(v, &at)?
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.as_str(), s)),
                None => Err(format!("{at}.{k} is not a string")),
            })
            .collect()
    }

    /// `name` must be absent, null or empty.
    pub(super) fn empty(&self, name: &str) -> Result<(), String> {
        match self.get(name) {
            None => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Ok(()),
            Some(Value::Object(o)) if o.is_empty() => Ok(()),
            Some(_) => Err(format!("{} is not allowed", self.at(name))),
        }
    }
}

/// `v` as an object.
pub(super) fn object<'v>(v: &'v Value, at: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at} is not an object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_without_case_and_unknown_ones_are_refused() {
        let v = json!({"replicated": {"Replicas": 1}, "NAME": "x"});
        let f = fields(&v, "Spec", &["Name", "Replicated"]).unwrap();
        assert_eq!(f.str("Name").unwrap(), Some("x"));
        assert!(f.get("Replicated").is_some());
        let e = fields(&v, "Spec", &["Name"]).err().unwrap();
        assert_eq!(e, "Spec.replicated is not allowed");
        assert!(f.uint("Name").unwrap_err().contains("whole number"));
    }
}
