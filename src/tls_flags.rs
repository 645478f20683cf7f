//! TLS flags to rustls configs: the public listener (`--ssl-*`), the API
//! (`--api-ssl-*`) and https targets (`--client-ssl-*`, `--insecure`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use hubgate_certs::{Issued, Manager};
use hubgate_proxy::tls::{self, CertResolver, CertSet, ClientAuth, UpstreamTls};
use rustls::sign::CertifiedKey;

use crate::cli::ServeArgs;
use crate::input::read;

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

/// The certificate and key a listener's `--<prefix>ssl-cert/-key` name.
/// A served key with the PEM bytes it came from (certificate, key).
type Loaded = (CertifiedKey, Vec<u8>, Vec<u8>);

fn static_key(f: &TlsFlags<'_>) -> anyhow::Result<Option<Loaded>> {
    let (Some(cert), Some(key)) = (f.cert, f.key) else {
        return Ok(None);
    };
    let p = f.prefix;
    let (cert, key) = (
        read(cert, &format!("--{p}ssl-cert"))?,
        read(key, &format!("--{p}ssl-key"))?,
    );
    let certified = tls::certified_key(&cert, &key)
        .with_context(|| format!("invalid --{p}ssl-cert/--{p}ssl-key"))?;
    Ok(Some((certified, cert, key)))
}

fn client_auth(f: &TlsFlags<'_>) -> anyhow::Result<Option<Vec<u8>>> {
    match (f.ca, f.request_cert) {
        (Some(ca), true) => Ok(Some(read(ca, &format!("--{}ssl-ca", f.prefix))?)),
        _ => Ok(None),
    }
}

fn server_tls(
    f: TlsFlags<'_>,
    resolver: Arc<CertResolver>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ca = client_auth(&f)?;
    let auth = ca.as_deref().map(|ca_pem| ClientAuth {
        ca_pem,
        required: f.reject_unauthorized,
    });
    Ok(tls::server_config(resolver, auth)?)
}

/// The public listener's TLS: static files, ACME certificates, or both.
pub(crate) struct PublicTls {
    pub(crate) config: Option<Arc<rustls::ServerConfig>>,
    /// The resolver ACME certificates are swapped into.
    pub(crate) resolver: Option<Arc<CertResolver>>,
    /// What `--ssl-cert` serves (the default for names ACME does not cover).
    pub(crate) static_set: CertSet,
    /// `--ssl-cert`'s certificate, for the status and metrics.
    pub(crate) static_cert: Option<Issued>,
}

pub(crate) fn public_tls(
    args: &ServeArgs,
    acme: Option<&Arc<Manager>>,
) -> anyhow::Result<PublicTls> {
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
    let flags = TlsFlags {
        prefix: "",
        cert: &args.ssl_cert,
        key: &args.ssl_key,
        ca: &args.ssl_ca,
        request_cert: args.ssl_request_cert,
        reject_unauthorized: args.ssl_reject_unauthorized,
    };
    let loaded = static_key(&flags)?;
    let has_static = loaded.is_some();
    let static_cert = loaded.as_ref().and_then(|(_, cert, key)| {
        let (cert, key) = (String::from_utf8_lossy(cert), String::from_utf8_lossy(key));
        hubgate_certs::x509::inspect(&cert, &key, &[], std::time::SystemTime::now()).ok()
    });
    let static_set = loaded
        .map(|(k, _, _)| CertSet::single(Arc::new(k)))
        .unwrap_or_default();
    let resolver = match acme {
        Some(m) if args.acme_challenge == "tls-alpn-01" => {
            CertResolver::with_alpn_challenges(static_set.clone(), crate::acme::alpn(m))
        }
        Some(_) => CertResolver::new(static_set.clone()),
        None if has_static => CertResolver::new(static_set.clone()),
        None => {
            return Ok(PublicTls {
                config: None,
                resolver: None,
                static_set,
                static_cert,
            });
        }
    };
    let resolver = Arc::new(resolver);
    Ok(PublicTls {
        config: Some(server_tls(flags, resolver.clone())?),
        resolver: Some(resolver),
        static_set,
        static_cert,
    })
}

pub(crate) fn api_tls(args: &ServeArgs) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let flags = TlsFlags {
        prefix: "api-",
        cert: &args.api_ssl_cert,
        key: &args.api_ssl_key,
        ca: &args.api_ssl_ca,
        request_cert: args.api_ssl_request_cert,
        reject_unauthorized: args.api_ssl_reject_unauthorized,
    };
    let Some((key, _, _)) = static_key(&flags)? else {
        return Ok(None);
    };
    let resolver = Arc::new(CertResolver::new(CertSet::single(Arc::new(key))));
    Ok(Some(server_tls(flags, resolver)?))
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
