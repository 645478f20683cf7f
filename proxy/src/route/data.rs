//! A route's stored JSON: CHP stores the POSTed object as sent, extra keys
//! included, and reports it back with `last_activity` added. Each value is
//! kept as its raw JSON text, so JupyterHub's `check_routes` sees its own
//! `target` byte for byte and never re-adds a route.

use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::clock::{format_iso8601, parse_js_date};
use crate::error::RouteError;
use crate::upstream::target::Target;

/// A parsed route body.
pub(crate) struct RouteData {
    /// The object's members rendered as `"k":v,...`, without braces and
    /// without `last_activity`, which is appended at render time.
    pub(crate) fields: Box<str>,
    pub(crate) target: Target,
    /// `last_activity` found in the body (only honoured on restore).
    pub(crate) last_activity: Option<u64>,
}

impl RouteData {
    /// Parses a POST body (or a restored entry). With `host`, the `host`
    /// member is set to it, as CHP does under `--host-routing`.
    pub(crate) fn parse(body: &[u8], host: Option<&str>) -> Result<Self, RouteError> {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        if !value.is_object() {
            return Err(RouteError::MissingTarget);
        }
        let mut members: IndexMap<String, Box<RawValue>> = serde_json::from_slice(body)?;
        let target = members
            .get("target")
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or(RouteError::MissingTarget)?;
        let target = Target::parse(&target)?;
        let last_activity = members
            .shift_remove("last_activity")
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .and_then(|s| parse_js_date(&s));
        if let Some(host) = host {
            members.insert(
                "host".to_owned(),
                RawValue::from_string(serde_json::to_string(host)?)?,
            );
        }
        let mut fields = String::with_capacity(body.len());
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                fields.push(',');
            }
            fields.push_str(&serde_json::to_string(k)?);
            fields.push(':');
            fields.push_str(v.get());
        }
        Ok(Self {
            fields: fields.into(),
            target,
            last_activity,
        })
    }
}

/// Appends `{fields,"last_activity":"…"}` to `out`.
pub(crate) fn render(fields: &str, last_activity_ms: u64, out: &mut String) {
    out.push('{');
    out.push_str(fields);
    if !fields.is_empty() {
        out.push(',');
    }
    out.push_str("\"last_activity\":\"");
    out.push_str(&format_iso8601(last_activity_ms));
    out.push_str("\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(body: &str, host: Option<&str>) -> String {
        let d = RouteData::parse(body.as_bytes(), host).unwrap();
        let mut out = String::new();
        render(&d.fields, 0, &mut out);
        out
    }

    #[test]
    fn echoes_members_as_sent_with_last_activity() {
        assert_eq!(
            rendered(
                r#"{"target": "http://10.0.1.5:8888", "user": "alice", "n": 1.50, "x": {"b":[1, 2]}}"#,
                None
            ),
            r#"{"target":"http://10.0.1.5:8888","user":"alice","n":1.50,"x":{"b":[1, 2]},"last_activity":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn replaces_a_sent_last_activity_and_sets_host() {
        let d = RouteData::parse(
            br#"{"target":"http://h:1","last_activity":"2026-01-01T00:00:00.000Z","host":"x"}"#,
            Some("a.example.org"),
        )
        .unwrap();
        assert_eq!(
            &*d.fields,
            r#""target":"http://h:1","host":"a.example.org""#
        );
        assert_eq!(d.last_activity, Some(1_767_225_600_000));
    }

    #[test]
    fn rejects_bad_bodies_with_chp_messages() {
        let err = |b: &str| {
            RouteData::parse(b.as_bytes(), None)
                .err()
                .unwrap()
                .to_string()
        };
        assert!(err("").starts_with("Body not valid JSON"));
        assert!(err("{nope").starts_with("Body not valid JSON"));
        assert_eq!(err("{}"), "Must specify 'target' as string");
        assert_eq!(err(r#"{"target": 5}"#), "Must specify 'target' as string");
        assert_eq!(err("[1]"), "Must specify 'target' as string");
        assert!(err(r#"{"target": "nope"}"#).starts_with("Invalid target"));
    }
}
