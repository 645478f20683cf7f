//! Entry points for the fuzz targets in `fuzz/`, compiled only under
//! `--cfg fuzzing` (cargo-fuzz sets it) and in unit tests, which replay the
//! committed corpus through them. Each takes a fuzzer's raw bytes, runs one
//! parser on them and asserts its properties; a panic is a finding.

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::BytesMut;

use crate::escape::percent_decode;
use crate::hygiene::{Refusal, normalize_path};
use crate::route::RouteStore;
use crate::upstream::h1::{Decoded, framing, parse_head};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"))
});

/// `request_path`'s input: the bytes as a path, when they are UTF-8.
pub fn request_path_bytes(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data) {
        request_path(path);
    }
}

/// Path hygiene: the cleaned path has nothing left to clean, and where no
/// `%2F` makes segments ambiguous it equals RFC 3986 §5.2.4 applied to the
/// decoded path (climbing above the root refused by both). So a backend
/// that decodes and resolves dots itself routes where the proxy routed.
pub fn request_path(raw: &str) {
    let ours = normalize_path(raw);
    if let Ok(clean) = &ours {
        let again = normalize_path(clean);
        assert!(
            matches!(again, Ok(Cow::Borrowed(_))),
            "{raw:?} → {clean:?} → {again:?}"
        );
        if let (Ok(decoded), true) = (percent_decode(clean), clean.starts_with('/')) {
            let has_dots = decoded.split('/').any(|s| s == "." || s == "..");
            assert!(
                !has_dots,
                "{raw:?} → {clean:?} decodes to dot-segments {decoded:?}"
            );
        }
    }
    let ambiguous = raw.to_ascii_lowercase().contains("%2f");
    let (Ok(decoded), false, true) = (percent_decode(raw), ambiguous, raw.starts_with('/')) else {
        return;
    };
    let reference = remove_dot_segments(&decoded);
    match (&ours, reference) {
        (Ok(clean), Some(expected)) => {
            let got = percent_decode(clean).map(Cow::into_owned);
            assert_eq!(got.as_deref(), Ok(expected.as_str()), "{raw:?}");
        }
        (Err(Refusal::AboveRoot), None) => {}
        (ours, reference) => panic!("{raw:?}: ours {ours:?}, RFC 3986 {reference:?}"),
    }
}

/// RFC 3986 §5.2.4 as written (its input-buffer loop), `None` where a `..`
/// finds the output empty, i.e. climbs above the root.
fn remove_dot_segments(path: &str) -> Option<String> {
    let mut input = path.to_owned();
    let mut output = String::new();
    let pop = |output: &mut String| -> bool {
        if output.is_empty() {
            return false;
        }
        let cut = output.rfind('/').unwrap_or(0);
        output.truncate(cut);
        true
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".into();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            if !pop(&mut output) {
                return None;
            }
        } else if input == "/.." {
            input = "/".into();
            if !pop(&mut output) {
                return None;
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    Some(output)
}

/// The upstream response head parser and body decoder: no panic, and the
/// body decodes to the same bytes and outcome whether it arrives at once
/// or in pieces (their size from the first byte).
pub fn response(data: &[u8]) {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_head(&buf, &mut Vec::new()) else {
        return;
    };
    bytes::Buf::advance(&mut buf, head.len);
    let Ok(state) = framing(&head, false) else {
        return;
    };
    let whole = decode(state, [&buf[..]].into_iter());
    let pieces = decode(state, buf.chunks(usize::from(piece % 32) + 1));
    assert_eq!(
        whole,
        pieces,
        "decoded at once and in pieces of {}",
        piece % 32 + 1
    );
}

/// The body bytes and how decoding ended: `Ok(true)` complete, `Ok(false)`
/// waiting for more, `Err` refused.
fn decode<'a>(
    mut state: crate::upstream::h1::State,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<u8>, Result<bool, ()>) {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    // The body is polled once before any byte arrives (an empty body ends
    // there), then after each read.
    for chunk in std::iter::once(&[][..]).chain(chunks) {
        buf.extend_from_slice(chunk);
        loop {
            match state.next(&mut buf) {
                Ok(Some(Decoded::Data(d))) => out.extend_from_slice(&d),
                Ok(Some(Decoded::End)) => return (out, Ok(true)),
                Ok(None) => break,
                Err(_) => return (out, Err(())),
            }
        }
    }
    (out, Ok(false))
}

/// `api_route`'s input: the path up to the first newline, then the body.
pub fn api_route_bytes(data: &[u8]) {
    let (path, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    if let Ok(path) = std::str::from_utf8(path) {
        api_route(path, body);
    }
}

/// A REST API `POST /api/routes<path>`: no panic, and an accepted route
/// survives the routes file's round trip (render, restore, render).
pub fn api_route(path: &str, body: &[u8]) {
    RUNTIME.block_on(async {
        let store = RouteStore::new(false);
        if store.add_api_route(path, body).await.is_err() {
            return;
        }
        let saved = store.load().render_api_routes(None);
        let restored = RouteStore::new(false);
        let n = restored.restore_api_routes(saved.as_bytes()).await;
        assert_eq!(n.ok(), Some(1), "{saved}");
        assert_eq!(
            as_json(&restored.load().render_api_routes(None)),
            as_json(&saved)
        );
    });
}

/// The routes file loader: no panic, and what it accepts renders to a file
/// that restores to the same table.
pub fn routes_file(json: &[u8]) {
    RUNTIME.block_on(async {
        let store = RouteStore::new(false);
        if store.restore_api_routes(json).await.is_err() {
            return;
        }
        let saved = store.load().render_api_routes(None);
        let again = RouteStore::new(false);
        let restored = again.restore_api_routes(saved.as_bytes()).await;
        assert!(restored.is_ok(), "{saved}");
        assert_eq!(
            as_json(&again.load().render_api_routes(None)),
            as_json(&saved)
        );
    });
}

/// A rendering as a JSON value (the routes' order is not part of it).
fn as_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("rendered bad JSON {text:?}: {e}"))
}

#[cfg(test)]
mod replay {
    /// Runs every committed corpus input of `target` through `run`.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn the_committed_corpus_passes_every_target() {
        replay("request_path", super::request_path_bytes);
        replay("response", super::response);
        replay("api_route", super::api_route_bytes);
        replay("routes_file", super::routes_file);
    }
}
