//! The entry point for the fuzz target `guard_request` in `fuzz/`,
//! compiled only under `--cfg fuzzing` and in unit tests, which replay the
//! committed corpus through it. A panic is a finding.

use http::{Method, Uri};

use crate::json::parse_strict;
use crate::policy::{Policy, Verdict};
use crate::target::parse;

/// One request as the guard sees it: the first line `METHOD TARGET`, the
/// rest its body. What passes the shape check has no segment to resolve
/// and a method the API uses; a body parsed strictly serialises to JSON
/// that parses to the same value; the discovery policy allows only reads
/// without a body.
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
