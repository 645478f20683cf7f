//! The upstream response head parser and body decoders: the first byte sets
//! the piece size, the rest is the response as an upstream sends it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubgate_proxy::fuzz::response(data));
