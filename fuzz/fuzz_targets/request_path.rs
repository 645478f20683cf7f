//! Request path hygiene against RFC 3986 §5.2.4 (see `hubgate_proxy::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_proxy::fuzz::request_path_bytes(data));
