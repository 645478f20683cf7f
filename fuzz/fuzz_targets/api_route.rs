//! A REST API route: the path up to the first newline, then the JSON body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (path, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    if let Ok(path) = std::str::from_utf8(path) {
        hubgate_proxy::fuzz::api_route(path, body);
    }
});
