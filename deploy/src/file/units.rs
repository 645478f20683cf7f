//! Sizes (`512M`, `4G`) and durations (`30m`, `1h`) as the file writes them.

use serde::Deserialize;

/// A byte count: a number, or a string with a `K`, `M`, `G` or `T`
/// suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parses `512M`, `4G`, `1024`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (digits, unit) = split_unit(t);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a size like 512M or 4G"))?;
        let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M, G or T)")),
        };
        n.checked_mul(1 << shift)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

/// A duration in whole seconds: a number of seconds, or a string with an
/// `s`, `m`, `h` or `d` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

impl Duration {
    /// Parses `90s`, `30m`, `1h`, `2d`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (digits, unit) = split_unit(s.trim());
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 30m or 1h"))?;
        let factor = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h or d)")),
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

/// A TCP port number as the file writes it: 1 to 65535.
pub(super) fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = i64::deserialize(d)?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| serde::de::Error::custom(format!("a port number, 1-65535, not {n}")))
}

fn split_unit(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("512M"), Ok(Size(512 << 20)));
        assert_eq!(Size::parse("4G"), Ok(Size(4 << 30)));
        assert_eq!(Size::parse("4GiB"), Ok(Size(4 << 30)));
        assert_eq!(Size::parse("1024"), Ok(Size(1024)));
        assert!(Size::parse("4X").unwrap_err().contains("unknown unit"));
        assert!(Size::parse("G").unwrap_err().contains("not a size"));
        assert!(
            Size::parse("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("90"), Ok(Duration(90)));
        assert_eq!(Duration::parse("30m"), Ok(Duration(1800)));
        assert_eq!(Duration::parse("1h"), Ok(Duration(3600)));
        assert!(Duration::parse("1w").unwrap_err().contains("unknown unit"));
    }
}
