//! `hubgate serve`'s flags and environment turned into the proxy's plain
//! values: checks clap cannot make, the token, error pages, the proxy's
//! configuration and the client limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use hubgate_proxy::server::Limits;
use hubgate_proxy::{ErrorPages, ProxyConfig, Target};

use super::listen::address;
use crate::acme;
use crate::cli::{ServeArgs, parse_ip};
use crate::input::{UsageError, read};
use crate::tls_flags::upstream_tls;

/// Checks what clap cannot: unsupported flags and values that must parse.
pub(crate) fn validate(args: &ServeArgs) -> Result<(), UsageError> {
    let unsupported = [
        (
            args.storage_backend.is_some(),
            "--storage-backend is not supported; use --routes-file to persist routes",
        ),
        (args.auto_rewrite, "--auto-rewrite is not supported"),
        (
            args.protocol_rewrite.is_some(),
            "--protocol-rewrite is not supported",
        ),
        (
            args.ssl_allow_rc4,
            "--ssl-allow-rc4 is not supported: RC4 is broken and rustls does not implement it",
        ),
    ];
    if let Some((_, msg)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(UsageError((*msg).to_owned()));
    }
    for (flag, url) in [
        ("--default-target", &args.default_target),
        ("--error-target", &args.error_target),
    ] {
        if let Some(url) = url {
            Target::parse(url).map_err(|e| UsageError(format!("invalid value for {flag}: {e}")))?;
        }
    }
    custom_headers(&args.custom_header)?;
    acme::validate(args)?;
    if args.max_header_size < 8192 {
        return Err(UsageError(
            "--max-header-size must be at least 8k (the read buffer's minimum)".into(),
        ));
    }
    if args.max_connections == 0 || args.max_connections_per_client == Some(0) {
        return Err(UsageError(
            "--max-connections and --max-connections-per-client must be above 0".into(),
        ));
    }
    if args.header_timeout == 0 || args.keep_alive_timeout == 0 {
        return Err(UsageError(
            "--header-timeout and --keep-alive-timeout must be above 0".into(),
        ));
    }
    for (flag, ip) in [
        ("--ip", &args.ip),
        ("--api-ip", &args.api_ip),
        ("--metrics-ip", &args.metrics_ip),
    ] {
        if parse_ip(ip).is_none() {
            return Err(UsageError(format!(
                "invalid value '{ip}' for {flag}: not an IP address or a host name that resolves"
            )));
        }
    }
    Ok(())
}

pub(super) fn custom_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, UsageError> {
    raw.iter()
        .map(|h| {
            let bad = || {
                UsageError(format!(
                    "invalid value '{h}' for --custom-header: expected NAME:VALUE"
                ))
            };
            let (name, value) = h.split_once(':').ok_or_else(bad)?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
            Ok((name, value))
        })
        .collect()
}

/// The auth token: `CONFIGPROXY_AUTH_TOKEN`, else the contents of the file
/// named by `CONFIGPROXY_AUTH_TOKEN_FILE` (a docker secret).
pub(crate) fn auth_token(
    env_token: Option<String>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = env_token.filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read CONFIGPROXY_AUTH_TOKEN_FILE {}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "CONFIGPROXY_AUTH_TOKEN_FILE {} is empty",
        path.display()
    );
    Ok(Some(token))
}

pub(super) fn error_pages(dir: Option<&Path>) -> anyhow::Result<ErrorPages> {
    let Some(dir) = dir else {
        return Ok(ErrorPages::default());
    };
    let mut by_code = HashMap::new();
    let mut fallback = None;
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --error-path {}", dir.display()))?
    {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".html"))
        else {
            continue;
        };
        let page = Bytes::from(read(&path, "error page")?);
        match stem.parse::<u16>() {
            Ok(code) => {
                by_code.insert(code, page);
            }
            Err(_) if stem == "error" => fallback = Some(page),
            Err(_) => {}
        }
    }
    Ok(ErrorPages::new(by_code, fallback))
}

pub(super) fn proxy_config(args: &ServeArgs) -> anyhow::Result<ProxyConfig> {
    Ok(ProxyConfig {
        include_prefix: !args.no_include_prefix,
        prepend_path: !args.no_prepend_path,
        x_forward: !args.no_x_forward,
        change_origin: args.change_origin,
        custom_headers: custom_headers(&args.custom_header).map_err(|e| anyhow::anyhow!(e.0))?,
        proxy_timeout: args.proxy_timeout.map(Duration::from_millis),
        max_body_size: args.max_body_size,
        error_target: args.error_target.clone(),
        error_pages: error_pages(args.error_path.as_deref())?,
        upstream_tls: upstream_tls(args)?,
        tcp_keepalive: proxy_config_keepalive(args),
        hsts: args
            .hsts
            .and_then(|s| HeaderValue::try_from(format!("max-age={s}")).ok()),
        ..ProxyConfig::default()
    })
}

pub(super) fn proxy_config_keepalive(args: &ServeArgs) -> Option<Duration> {
    (args.tcp_keepalive > 0).then(|| Duration::from_secs(args.tcp_keepalive))
}

/// The REST API changes every route: without a token it may listen on
/// loopback only (where configurable-http-proxy merely warns, hubgate
/// refuses to start).
pub(super) fn open_api_refused(args: &ServeArgs, has_token: bool) -> anyhow::Result<()> {
    let api = address(&args.api_ip, 0).ip();
    if has_token || args.api_socket.is_some() || api.is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "the REST API on {} would be open to anyone: set CONFIGPROXY_AUTH_TOKEN (or CONFIGPROXY_AUTH_TOKEN_FILE), or keep --api-ip on loopback",
        args.api_ip
    )
}

/// The client-side limits from the flags (see `server::Limits`).
pub(super) fn limits(args: &ServeArgs) -> Limits {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Limits {
        header_timeout: Duration::from_millis(args.header_timeout),
        keep_alive: Duration::from_millis(args.keep_alive_timeout),
        socket_timeout: args.timeout.map(Duration::from_millis),
        max_head: size(args.max_header_size),
        max_fields: args.max_headers,
        max_request_line: size(args.max_request_line),
        max_connections: args.max_connections,
        max_per_client: args.max_connections_per_client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_env_or_file() {
        assert_eq!(
            auth_token(Some("t".into()), None).unwrap().as_deref(),
            Some("t")
        );
        assert_eq!(auth_token(None, None).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "secret\n").unwrap();
        assert_eq!(
            auth_token(None, Some(file.clone())).unwrap().as_deref(),
            Some("secret")
        );
        assert_eq!(
            auth_token(Some(String::new()), Some(file))
                .unwrap()
                .as_deref(),
            Some("secret")
        );
        assert!(auth_token(None, Some(dir.path().join("missing"))).is_err());
    }

    #[test]
    fn custom_headers_parse() {
        let h = custom_headers(&["x-a: 1".into(), "x-b:two".into()]).unwrap();
        assert_eq!(h[1].1, "two");
        assert!(custom_headers(&["nocolon".into()]).is_err());
        assert!(custom_headers(&["bad name:1".into()]).is_err());
    }
}
