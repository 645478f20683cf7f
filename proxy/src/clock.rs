//! Wall-clock helpers for `last_activity`: milliseconds since the epoch, CHP's
//! ISO 8601 format, and a parser for the `inactive_since` query parameter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Formats milliseconds since the epoch as CHP does (`Date.toISOString()`):
/// UTC, milliseconds, trailing `Z`.
pub fn format_iso8601(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Parses a timestamp the way CHP's `Date.parse` accepts it for
/// `inactive_since`: ISO 8601 date or date-time (with `Z`, an offset, or none,
/// which is taken as UTC), or an RFC 2822 date. Returns milliseconds since the
/// epoch, or `None` when the value is not a date.
pub fn parse_js_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%:z").map(|t| t.with_timezone(&Utc))
        })
        .or_else(|_| DateTime::parse_from_rfc2822(s).map(|t| t.with_timezone(&Utc)))
        .ok()
        .or_else(|| {
            let naive = s.strip_suffix('Z').unwrap_or(s);
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(naive, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|n| n.and_utc())
        })?;
    u64::try_from(parsed.timestamp_millis()).ok()
}

/// A route's last activity, shared by every table version that holds the
/// route, so a table swap never loses it. The request path does a relaxed
/// load and at most one relaxed store per millisecond: no lock.
#[derive(Debug)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    pub(crate) fn at(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }

    pub(crate) fn touch(&self) {
        let now = now_ms();
        if now > self.0.load(Ordering::Relaxed) {
            self.0.store(now, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_iso8601(1_767_268_800_123),
            "2026-01-01T12:00:00.123Z"
        );
    }

    #[test]
    fn parses_the_forms_date_parse_accepts() {
        let noon = 1_767_268_800_000;
        assert_eq!(parse_js_date("2026-01-01T12:00:00.000Z"), Some(noon));
        assert_eq!(parse_js_date("2026-01-01T12:00:00Z"), Some(noon));
        assert_eq!(parse_js_date("2026-01-01T12:00:00"), Some(noon));
        assert_eq!(parse_js_date("2026-01-01T13:00:00+01:00"), Some(noon));
        assert_eq!(parse_js_date("2026-01-01T12:00"), Some(noon));
        assert_eq!(parse_js_date("2026-01-01"), Some(noon - 12 * 3_600_000));
        assert_eq!(parse_js_date("Thu, 01 Jan 2026 12:00:00 GMT"), Some(noon));
        assert_eq!(parse_js_date("yesterday"), None);
        assert_eq!(parse_js_date(""), None);
    }

    #[test]
    fn activity_only_moves_forward() {
        let a = Activity::at(u64::MAX - 1);
        a.touch();
        assert_eq!(a.get(), u64::MAX - 1);
        let b = Activity::at(0);
        b.touch();
        assert!(b.get() > 0);
    }
}
