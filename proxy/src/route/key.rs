//! Route keys and request paths: CHP's normalisation (`cleanPath`,
//! `trimPrefix`) and its segment-wise prefix candidates (`lib/trie.js`).

pub(crate) use crate::escape::percent_decode;

/// Normalises a (decoded) route key: one leading `/`, no trailing `/` except
/// for the root key `/`. `user/a/`, `/user/a` and `//user/a//` are one key.
pub(crate) fn normalize_key(decoded: &str) -> String {
    let inner = decoded.trim_matches('/');
    let mut key = String::with_capacity(inner.len() + 1);
    key.push('/');
    key.push_str(inner);
    key
}

/// The lookup form of a (decoded) request path, borrowed from it: leading
/// slashes collapsed to one, trailing slashes removed.
pub(crate) fn lookup_form(path: &str) -> &str {
    let without_trailing = path.trim_end_matches('/');
    let leading = without_trailing.len() - without_trailing.trim_start_matches('/').len();
    if leading == 0 {
        // A path without a leading slash (CHP adds one): only `*` or garbage.
        return "/";
    }
    &without_trailing[leading - 1..]
}

/// The keys that can match `form`, longest first: the whole path, then each
/// shorter whole-segment prefix, then `/`.
pub(crate) fn prefixes(form: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(form.len());
    std::iter::from_fn(move || {
        let e = end?;
        let candidate = if e == 0 { "/" } else { &form[..e] };
        end = if candidate == "/" {
            None
        } else {
            candidate.rfind('/')
        };
        Some(candidate)
    })
}

/// Number of path segments in a key (`/` has none).
pub(crate) fn segment_count(key: &str) -> usize {
    if key == "/" {
        0
    } else {
        key.matches('/').count()
    }
}

/// The raw request path with its first `n` segments removed, escapes kept as
/// the client sent them (`--no-include-prefix`).
pub(crate) fn strip_segments(raw_path: &str, n: usize) -> &str {
    let mut rest = raw_path;
    for _ in 0..n {
        let segment_start = rest.trim_start_matches('/');
        rest = segment_start.find('/').map_or("", |i| &segment_start[i..]);
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_keys() {
        assert_eq!(normalize_key(""), "/");
        assert_eq!(normalize_key("/"), "/");
        assert_eq!(normalize_key("user/a/"), "/user/a");
        assert_eq!(normalize_key("//user/a//"), "/user/a");
    }

    #[test]
    fn lookup_form_borrows_and_trims() {
        assert_eq!(lookup_form("/"), "/");
        assert_eq!(lookup_form("/user/a/"), "/user/a");
        assert_eq!(lookup_form("///user/a"), "/user/a");
        assert_eq!(lookup_form("*"), "/");
    }

    #[test]
    fn prefixes_are_whole_segments_longest_first() {
        let p: Vec<_> = prefixes("/b/c/dword").collect();
        assert_eq!(p, ["/b/c/dword", "/b/c", "/b", "/"]);
        let p: Vec<_> = prefixes("/").collect();
        assert_eq!(p, ["/"]);
    }

    #[test]
    fn strips_whole_segments_keeping_escapes() {
        assert_eq!(strip_segments("/bar/rest/of/it", 1), "/rest/of/it");
        assert_eq!(strip_segments("/user/al%69ce/tree", 2), "/tree");
        assert_eq!(strip_segments("/user/alice", 2), "");
        assert_eq!(strip_segments("/user/alice/", 2), "/");
        assert_eq!(strip_segments("/x", 0), "/x");
        assert_eq!(segment_count("/"), 0);
        assert_eq!(segment_count("/user/alice"), 2);
    }
}
