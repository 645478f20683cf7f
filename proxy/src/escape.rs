//! Strict percent-decoding, shared by route keys, request paths and unix
//! socket targets (a leaf: it imports nothing of the crate).

use std::borrow::Cow;

/// A `%` not followed by two hex digits, or escapes that do not decode to
/// UTF-8 (where JavaScript's `decodeURIComponent` throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEscape;

/// Strict percent-decoding, as `decodeURIComponent` does it. Borrows when the
/// input has no `%`, so the common request path allocates nothing.
pub(crate) fn percent_decode(s: &str) -> Result<Cow<'_, str>, BadEscape> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadEscape);
            };
            out.push(u8::try_from(h * 16 + l).map_err(|_| BadEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_decode_uri_component() {
        assert_eq!(percent_decode("/user/%E7%A7%80").unwrap(), "/user/秀");
        assert_eq!(percent_decode("/b%40r/b%20r").unwrap(), "/b@r/b r");
        assert!(matches!(
            percent_decode("/plain").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(percent_decode("/bad%zz"), Err(BadEscape));
        assert_eq!(percent_decode("/bad%4"), Err(BadEscape));
        assert_eq!(percent_decode("/bad%ff"), Err(BadEscape));
    }
}
