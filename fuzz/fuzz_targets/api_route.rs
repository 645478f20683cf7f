//! A REST API route: the path up to the first newline, then the JSON body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_proxy::fuzz::api_route_bytes(data));
