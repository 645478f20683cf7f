//! Request path hygiene against RFC 3986 §5.2.4 (see `hubgate_proxy::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        hubgate_proxy::fuzz::request_path(path);
    }
});
