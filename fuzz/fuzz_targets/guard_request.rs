//! The Docker API guard's view of a request: its target's shape check,
//! strict JSON and the discovery policy (see `hubgate_guard::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_guard::fuzz::request(data));
