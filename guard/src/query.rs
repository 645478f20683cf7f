//! A call's query as the daemon reads it: `key=value` pairs,
//! percent-decoded, each key once (the daemon reads the first of a
//! repeated key; the guard refuses the repeat rather than guess), and the
//! `filters` parameter's JSON (`{"key": ["value"]}` or
//! `{"key": {"value": true}}`).

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::json::parse_strict;

/// The decoded pairs of `query`.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = vec![];
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("the parameter {k:?} twice"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, String> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// The `filters` parameter: each filter's values (none when absent).
pub(crate) fn filters(query: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let pairs = query_pairs(query)?;
    let Some((_, text)) = pairs.iter().find(|(k, _)| k == "filters") else {
        return Ok(BTreeMap::new());
    };
    let v = parse_strict(text.as_bytes()).map_err(|e| format!("filters: {e}"))?;
    let Value::Object(map) = v else {
        return Err("filters is not an object".to_owned());
    };
    let mut out = BTreeMap::new();
    for (key, values) in map {
        let values = match values {
            Value::Array(items) => items
                .into_iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            Value::Object(set) => set
                .into_iter()
                .map(|(k, on)| (on == Value::Bool(true)).then_some(k))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let Some(values) = values else {
            return Err(format!("the filter {key:?} is not a list of strings"));
        };
        out.insert(key, values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_in_both_forms_and_repeats_are_refused() {
        let q = "filters=%7B%22service%22%3A%5B%22jupyter-a%22%5D%2C%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D";
        let f = filters(Some(q)).unwrap();
        assert_eq!(f["service"], ["jupyter-a"]);
        assert_eq!(f["desired-state"], ["running"]);
        assert!(
            filters(Some("filters=%7B%7D&filters=%7B%7D"))
                .unwrap_err()
                .contains("twice")
        );
        assert!(filters(Some("filters=%7B%22a%22%3A1%7D")).is_err());
        assert!(filters(None).unwrap().is_empty());
    }
}
