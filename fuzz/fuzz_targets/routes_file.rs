//! The routes file (`--routes-file`) as restored at start.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_proxy::fuzz::routes_file(data));
