//! ACME certificates for hubgate: obtained and renewed by hubgate itself,
//! stored on a directory replicas can share, with challenges any replica
//! answers.
//!
//! # What it owns
//! - [`Manager`]: one loop per certificate. It loads the stored certificate
//!   (a restart never re-orders a valid one), publishes every valid
//!   certificate on a watch channel ([`Manager::subscribe`]), renews at the
//!   time [`policy`] sets (ARI window when the directory offers one, else
//!   2/3 of the lifetime with jitter, an emergency floor at 1/20), backs off
//!   after failures, and reports each certificate's state
//!   ([`Manager::status`]).
//! - [`Store`]: the storage directory (0700, keys 0600, atomic writes) and
//!   the lock files through which exactly one replica orders a given
//!   certificate, a stale lock being taken over.
//! - [`Challenges`]: HTTP-01 and TLS-ALPN-01 responses, in memory and in the
//!   storage, so whichever replica the CA reaches can answer.
//! - Order flow on instant-acme, with a fresh P-256 key per certificate and
//!   the chain checked ([`x509::inspect`]) before it is stored or served.
//!
//! # What it does not own
//! Serving: the binary turns published [`Issued`] certificates into the
//! proxy's `CertResolver` set and hooks [`Challenges`] into its listeners.
//! Files, flags and the environment: the binary passes the directory URL,
//! the CA bytes and the storage path.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use hubgate_certs::{AcmeConfig, Manager, Store};
//! # async fn run() -> Result<(), hubgate_certs::CertsError> {
//! let store = Store::open("/data/acme")?;
//! let config = AcmeConfig::new(
//!     "https://acme-staging-v02.api.letsencrypt.org/directory".into(),
//!     vec![vec!["hub.example.org".into()]],
//!     "replica-1".into(),
//! );
//! let manager = Arc::new(Manager::new(config, store));
//! let mut certs = manager.subscribe();
//! tokio::spawn(manager.clone().run(tokio_util::sync::CancellationToken::new()));
//! certs.changed().await.ok();
//! # Ok(()) }
//! ```

mod acme;
mod challenge;
mod client;
mod error;
pub mod files;
mod lock;
mod manager;
pub mod policy;
mod renewal;
mod store;
pub mod x509;

pub use challenge::Challenges;
pub use error::CertsError;
pub use manager::{AcmeConfig, CertStatus, Manager};
pub use store::Store;
pub use x509::Issued;

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, loose limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Checks names before anything is ordered for them: DNS host names only
/// (HTTP-01 and TLS-ALPN-01 cannot prove a wildcard, RFC 8555 §7.1.3, and
/// hubgate orders DNS identifiers only), 253 characters at most, labels of
/// letters, digits and inner hyphens.
pub fn check_names(names: &[String]) -> Result<(), CertsError> {
    for n in names {
        if n.starts_with("*.") {
            return Err(CertsError::BadName(format!(
                "{n:?}: a wildcard needs DNS-01, which hubgate does not answer"
            )));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let ip_like = n.parse::<std::net::IpAddr>().is_ok();
        if n.len() > 253
            || ip_like
            || !n.split('.').all(label_ok)
            || n.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(CertsError::BadName(format!(
                "{n:?} is not a lower-case DNS host name"
            )));
        }
    }
    Ok(())
}

/// How authorizations are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// HTTP-01 on the plain-HTTP listener (port 80).
    #[default]
    Http01,
    /// TLS-ALPN-01 on the TLS listener (port 443).
    TlsAlpn01,
}

impl ChallengeKind {
    /// `http-01` or `tls-alpn-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_ordering() {
        let ok = |n: &str| check_names(&[n.to_owned()]).is_ok();
        assert!(ok("hub.example.org") && ok("hub") && ok("a-b.test"));
        for bad in [
            "*.example.org",
            "bad name",
            "-a.org",
            "a..org",
            "10.0.0.1",
            "Hub.org",
            "",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        let long = format!("{}.org", "a".repeat(64));
        assert!(!ok(&long));
    }
}
