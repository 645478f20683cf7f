//! Discovery's service label parser: one `key=value` label per line. It
//! must never panic, and what it accepts it accepts again.
#![no_main]

use std::collections::HashMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let labels: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let first = hubgate_discovery::labels::parse(&labels);
    let second = hubgate_discovery::labels::parse(&labels);
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
});
