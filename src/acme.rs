//! ACME wiring: the `--acme-*` flags to a [`Manager`], its certificates into
//! the public listener's resolver (beside static `--ssl-cert` files), its
//! challenges into the listeners, and `GET /api/certs` and the expiry
//! metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hubgate_certs::{AcmeConfig, ChallengeKind, Issued, Manager, Store};
use hubgate_proxy::StatusPage;
use hubgate_proxy::server::Http01;
use hubgate_proxy::tls::{self, AlpnChallenges, CertResolver, CertSet};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::input::{UsageError, read};

/// The names of each certificate `--acme-domain` asks for, checked.
fn certificates(args: &ServeArgs) -> Result<Vec<Vec<String>>, UsageError> {
    args.acme_domain
        .iter()
        .map(|flag| {
            let names: Vec<String> = flag
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect();
            if names.is_empty() {
                return Err(UsageError(format!(
                    "invalid value '{flag}' for --acme-domain: no name"
                )));
            }
            hubgate_certs::check_names(&names).map_err(|e| {
                UsageError(format!("invalid value '{flag}' for --acme-domain: {e}"))
            })?;
            Ok(names)
        })
        .collect()
}

/// Checks the `--acme-*` flags (one-line errors, exit code 2).
pub(crate) fn validate(args: &ServeArgs) -> Result<(), UsageError> {
    let certs = certificates(args)?;
    if certs.is_empty() {
        if args.redirect_port.is_some() && args.ssl_cert.is_none() {
            return Err(UsageError(
                "--redirect-port needs --ssl-cert or --acme-domain (HTTPS to redirect to)".into(),
            ));
        }
        return Ok(());
    }
    if args.acme_storage.is_none() {
        return Err(UsageError("--acme-domain needs --acme-storage DIR".into()));
    }
    match args.acme_challenge.as_str() {
        "http-01" if args.redirect_port.is_none() => Err(UsageError(
            "--acme-challenge http-01 needs --redirect-port (the plain-HTTP listener, 80 in production)".into(),
        )),
        "http-01" | "tls-alpn-01" => directory(&args.acme_directory).map(|_| ()),
        other => Err(UsageError(format!(
            "invalid value '{other}' for --acme-challenge: http-01 or tls-alpn-01"
        ))),
    }
}

fn directory(value: &str) -> Result<String, UsageError> {
    match value {
        "letsencrypt" => Ok(hubgate_certs::LETSENCRYPT.into()),
        "letsencrypt-staging" => Ok(hubgate_certs::LETSENCRYPT_STAGING.into()),
        url if url.starts_with("https://") => Ok(url.into()),
        other => Err(UsageError(format!(
            "invalid value '{other}' for --acme-directory: letsencrypt, letsencrypt-staging or an https:// URL"
        ))),
    }
}

/// The manager the flags ask for (none without `--acme-domain`).
pub(crate) fn manager(args: &ServeArgs) -> anyhow::Result<Option<Arc<Manager>>> {
    let certs = certificates(args).map_err(|e| anyhow::anyhow!(e.0))?;
    let Some(storage) = &args.acme_storage else {
        return Ok(None);
    };
    if certs.is_empty() {
        return Ok(None);
    }
    let store =
        Store::open(storage).with_context(|| format!("--acme-storage {}", storage.display()))?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hubgate".into());
    let mut config = AcmeConfig::new(
        directory(&args.acme_directory).map_err(|e| anyhow::anyhow!(e.0))?,
        certs,
        format!("{host}:{}", std::process::id()),
    );
    config.email.clone_from(&args.acme_email);
    config.ca_pem = args
        .acme_ca_file
        .as_deref()
        .map(|p| read(p, "--acme-ca-file"))
        .transpose()?;
    config.challenge = match args.acme_challenge.as_str() {
        "tls-alpn-01" => ChallengeKind::TlsAlpn01,
        _ => ChallengeKind::Http01,
    };
    if let Some(ms) = args.acme_check_ms {
        config.check_every = Duration::from_millis(ms.max(100));
        config.backoff.base = Duration::from_millis(ms.max(100));
    }
    Ok(Some(Arc::new(Manager::new(config, store))))
}

/// The HTTP-01 responder for the plain-HTTP listener.
pub(crate) fn http01(manager: &Arc<Manager>) -> Http01 {
    let challenges = manager.challenges().clone();
    Arc::new(move |token| challenges.http01(token))
}

/// The TLS-ALPN-01 responder for the resolver.
pub(crate) fn alpn(manager: &Arc<Manager>) -> AlpnChallenges {
    let challenges = manager.challenges().clone();
    Arc::new(move |name| {
        let Some(pem) = challenges.tls_alpn01(name) else {
            tracing::debug!(
                name,
                "TLS-ALPN-01 handshake for a name with no pending challenge"
            );
            return None;
        };
        match tls::challenge_key(pem.as_bytes(), pem.as_bytes()) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                tracing::error!(name, error = %e, "TLS-ALPN-01 challenge certificate unusable");
                None
            }
        }
    })
}

/// Runs the manager and keeps `resolver` serving `static_set` plus every
/// certificate it publishes, until `shutdown`.
pub(crate) fn start(
    manager: Arc<Manager>,
    resolver: Arc<CertResolver>,
    static_set: CertSet,
    shutdown: &CancellationToken,
) {
    let mut published = manager.subscribe();
    tokio::spawn(manager.run(shutdown.clone()));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let issued = published.borrow_and_update().clone();
            let mut set = static_set.clone();
            for cert in issued.iter() {
                match tls::certified_key(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()) {
                    Ok(key) => {
                        let key = Arc::new(key);
                        cert.names.iter().for_each(|n| set.insert(n, key.clone()));
                        // Without a static certificate, clients sending no
                        // SNI (health checks by IP) get the first one.
                        set.default_to(key);
                    }
                    Err(e) => {
                        tracing::error!(names = ?cert.names, error = %e, "issued certificate refused by rustls")
                    }
                }
            }
            // The next handshake uses it; open connections keep theirs.
            resolver.store(set);
            tokio::select! {
                () = stop.cancelled() => return,
                changed = published.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// `GET /api/certs`: every certificate's state, ACME-managed and static.
pub(crate) fn page(manager: Option<Arc<Manager>>, static_cert: Option<Issued>) -> StatusPage {
    Arc::new(move || {
        let acme = manager.as_ref().map(|m| m.status()).unwrap_or_default();
        let static_certs: Vec<_> = static_cert
            .iter()
            .map(|c| json!({"names": c.names, "source": "file", "not_after_ms": ms(c.not_after), "issuer": c.issuer}))
            .collect();
        json!({"acme": acme, "static": static_certs}).to_string()
    })
}

/// Prometheus lines for certificate expiry.
pub(crate) fn metrics(manager: Option<Arc<Manager>>, static_cert: Option<Issued>) -> StatusPage {
    Arc::new(move || {
        let mut out = String::from(
            "# HELP hubgate_certificate_expiry_seconds End of validity of each served certificate (Unix time).\n\
             # TYPE hubgate_certificate_expiry_seconds gauge\n",
        );
        let mut line = |names: &[String], source: &str, not_after_ms: u64| {
            out.push_str(&format!(
                "hubgate_certificate_expiry_seconds{{name=\"{}\",source=\"{source}\"}} {}\n",
                names.first().map_or("", String::as_str),
                not_after_ms / 1000
            ));
        };
        for s in manager.iter().flat_map(|m| m.status()) {
            if let Some(t) = s.not_after_ms {
                line(&s.names, "acme", t);
            }
        }
        if let Some(c) = &static_cert {
            line(&c.names, "file", ms(c.not_after));
        }
        out
    })
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
