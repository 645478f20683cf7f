//! Error pages: `--error-path` files, or a small built-in HTML page.

use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;

/// Error pages by status code. The binary reads `--error-path DIR` into this
/// (`<code>.html`, then `error.html` as the fallback); without pages a small
/// built-in HTML page is generated.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    by_code: HashMap<u16, Bytes>,
    fallback: Option<Bytes>,
}

impl ErrorPages {
    /// Pages by status code, plus the page for every other code.
    pub fn new(by_code: HashMap<u16, Bytes>, fallback: Option<Bytes>) -> Self {
        Self { by_code, fallback }
    }

    /// The HTML for `status`.
    pub(crate) fn page(&self, status: StatusCode) -> Bytes {
        if let Some(page) = self
            .by_code
            .get(&status.as_u16())
            .or(self.fallback.as_ref())
        {
            return page.clone();
        }
        let code = status.as_u16();
        let reason = status.canonical_reason().unwrap_or("Error");
        Bytes::from(format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\
             <body><h1>{code} {reason}</h1><p>hubgate could not serve this request.</p></body></html>\n"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_first_then_fallback_then_built_in() {
        let pages = ErrorPages::new(
            HashMap::from([(404, Bytes::from_static(b"nf"))]),
            Some(Bytes::from_static(b"fb")),
        );
        assert_eq!(pages.page(StatusCode::NOT_FOUND), "nf");
        assert_eq!(pages.page(StatusCode::SERVICE_UNAVAILABLE), "fb");
        let built_in = ErrorPages::default().page(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::str::from_utf8(&built_in)
                .unwrap()
                .contains("503 Service Unavailable")
        );
    }
}
