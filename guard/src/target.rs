//! A request as the policy judges it: the method, the API path without its
//! version prefix, split into segments, and the query. A target that could
//! mean two things (an encoded character, a `..`, an empty segment, an
//! unknown version prefix, a method not spelled as the daemon spells it)
//! is refused before any policy sees it.

use http::{Method, Uri};

/// One API call, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    /// The path's segments after the version prefix (`/v1.41/services/x`:
    /// `["services", "x"]`).
    pub segments: Vec<String>,
    /// The query string as sent (the policy reads filters from it).
    pub query: Option<String>,
}

impl Call {
    /// The segments as `&str`, for matching.
    pub fn path(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// Checks a request's method and target; the reason when refused.
pub fn parse(method: &Method, uri: &Uri) -> Result<Call, String> {
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE
    ) {
        return Err(format!("the method {method:?} is not one the API uses"));
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err("a target with a scheme or host".to_owned());
    }
    let path = uri.path();
    if path.contains(['%', '\\']) {
        return Err(format!("an encoded or escaped character in {path:?}"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("the path {path:?} is not absolute"));
    };
    let mut segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("an empty, . or .. segment in {path:?}"));
    }
    if segments[0].starts_with('v') && segments[0][1..].starts_with(|c: char| c.is_ascii_digit()) {
        if !is_version(&segments[0]) {
            return Err(format!("the API version prefix {:?}", segments[0]));
        }
        segments.remove(0);
        if segments.is_empty() {
            return Err("a version prefix with no path".to_owned());
        }
    }
    Ok(Call {
        method: method.clone(),
        segments,
        query: uri.query().map(str::to_owned),
    })
}

/// `v1.N`: the daemon's only version prefix form.
fn is_version(s: &str) -> bool {
    s.strip_prefix("v1.")
        .is_some_and(|n| (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, target: &str) -> Result<Call, String> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let uri: Uri = target
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        parse(&method, &uri)
    }

    #[test]
    fn versioned_and_plain_paths_split_into_segments() {
        let c = call("GET", "/v1.41/services/abc?status=true").unwrap();
        assert_eq!(c.path(), ["services", "abc"]);
        assert_eq!(c.query.as_deref(), Some("status=true"));
        assert_eq!(call("HEAD", "/_ping").unwrap().path(), ["_ping"]);
        assert_eq!(call("GET", "/version").unwrap().path(), ["version"]);
        // A name beginning with v is a segment, not a version.
        assert_eq!(
            call("GET", "/v1.41/volumes/vault").unwrap().path(),
            ["volumes", "vault"]
        );
    }

    #[test]
    fn targets_that_could_mean_two_things_are_refused() {
        for (method, target) in [
            ("GET", "/v1.41/../containers/create"),
            ("GET", "/v1.41/./services"),
            ("GET", "/v1.41//services"),
            ("GET", "/v1.41/services/"),
            ("GET", "/v1.41/containers%2Fcreate"),
            ("GET", "/v1.41/services%2f"),
            ("GET", "/v2.0/services"),
            ("GET", "/v1.41x/services"),
            ("GET", "/v1.41"),
            ("get", "/v1.41/services"),
            ("PATCH", "/v1.41/services"),
            ("GET", "http://docker/v1.41/services"),
        ] {
            assert!(call(method, target).is_err(), "{method} {target} passed");
        }
    }
}
