//! TLS flags to rustls configs: the public listener (`--ssl-*`), the API
//! (`--api-ssl-*`) and https targets (`--client-ssl-*`, `--insecure`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use hubgate_proxy::tls::{self, CertResolver, CertSet, ClientAuth, UpstreamTls};

use crate::cli::ServeArgs;
use crate::serve::read;

/// One listener's TLS flags: `--<prefix>ssl-cert`, `-key`, `-ca`,
/// `-request-cert`, `-reject-unauthorized`.
struct TlsFlags<'a> {
    prefix: &'static str,
    cert: &'a Option<PathBuf>,
    key: &'a Option<PathBuf>,
    ca: &'a Option<PathBuf>,
    request_cert: bool,
    reject_unauthorized: bool,
}

fn server_tls(f: TlsFlags<'_>) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let (Some(cert), Some(key)) = (f.cert, f.key) else {
        return Ok(None);
    };
    let p = f.prefix;
    let key = tls::certified_key(
        &read(cert, &format!("--{p}ssl-cert"))?,
        &read(key, &format!("--{p}ssl-key"))?,
    )
    .with_context(|| format!("invalid --{p}ssl-cert/--{p}ssl-key"))?;
    let resolver = Arc::new(CertResolver::new(CertSet::single(Arc::new(key))));
    let ca = match (f.ca, f.request_cert) {
        (Some(ca), true) => Some(read(ca, &format!("--{p}ssl-ca"))?),
        _ => None,
    };
    let auth = ca.as_deref().map(|ca_pem| ClientAuth {
        ca_pem,
        required: f.reject_unauthorized,
    });
    Ok(Some(tls::server_config(resolver, auth)?))
}

pub(crate) fn public_tls(args: &ServeArgs) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    for (set, flag) in [
        (args.ssl_protocol.is_some(), "--ssl-protocol"),
        (args.ssl_ciphers.is_some(), "--ssl-ciphers"),
        (args.ssl_dhparam.is_some(), "--ssl-dhparam"),
    ] {
        if set {
            tracing::warn!(
                "{flag} is ignored: rustls negotiates TLS 1.2/1.3 with its own safe suites"
            );
        }
    }
    server_tls(TlsFlags {
        prefix: "",
        cert: &args.ssl_cert,
        key: &args.ssl_key,
        ca: &args.ssl_ca,
        request_cert: args.ssl_request_cert,
        reject_unauthorized: args.ssl_reject_unauthorized,
    })
}

pub(crate) fn api_tls(args: &ServeArgs) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    server_tls(TlsFlags {
        prefix: "api-",
        cert: &args.api_ssl_cert,
        key: &args.api_ssl_key,
        ca: &args.api_ssl_ca,
        request_cert: args.api_ssl_request_cert,
        reject_unauthorized: args.api_ssl_reject_unauthorized,
    })
}

pub(crate) fn upstream_tls(args: &ServeArgs) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if args.client_ssl_ca.is_none() && args.client_ssl_cert.is_none() && !args.insecure {
        return Ok(None);
    }
    let ca = args
        .client_ssl_ca
        .as_deref()
        .map(|p| read(p, "--client-ssl-ca"))
        .transpose()?;
    let cert = match (&args.client_ssl_cert, &args.client_ssl_key) {
        (Some(c), Some(k)) => Some((read(c, "--client-ssl-cert")?, read(k, "--client-ssl-key")?)),
        _ => None,
    };
    let opts = UpstreamTls {
        ca_pem: ca.as_deref(),
        client_cert: cert.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        insecure: args.insecure,
    };
    Ok(Some(
        tls::client_config(&opts).context("invalid --client-ssl-* files")?,
    ))
}
