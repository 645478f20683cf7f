//! Discovery's service label parser: one `key=value` label per line (see
//! `hubgate_discovery::labels::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_discovery::labels::fuzz(data));
