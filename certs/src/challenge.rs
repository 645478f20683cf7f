//! Challenge responses, answerable by any replica: kept in memory for this
//! process and written to the shared storage, where the other replicas find
//! them (with host-mode ports on every manager the CA's validation request
//! may reach any of them).
//!
//! - HTTP-01: `GET /.well-known/acme-challenge/<token>` answers the key
//!   authorization (RFC 8555 §8.3).
//! - TLS-ALPN-01: a handshake offering only `acme-tls/1` for a name gets a
//!   self-signed certificate for that name carrying the critical
//!   `id-pe-acmeIdentifier` extension with SHA-256 of the key authorization
//!   (RFC 8737 §3).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::CertsError;
use crate::store::{Store, read_opt, write_atomic};

/// The challenges being answered.
#[derive(Debug)]
pub struct Challenges {
    store: Store,
    http: ArcSwap<HashMap<String, String>>,
    /// Name → the challenge certificate and its key, PEM.
    alpn: ArcSwap<HashMap<String, Arc<str>>>,
}

impl Challenges {
    /// Challenges kept in (and read back from) `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            http: ArcSwap::default(),
            alpn: ArcSwap::default(),
        }
    }

    /// The HTTP-01 response for `token`: this process's, else one another
    /// replica wrote to the storage.
    pub fn http01(&self, token: &str) -> Option<String> {
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        if let Some(answer) = self.http.load().get(token) {
            return Some(answer.clone());
        }
        let bytes = read_opt(&self.store.challenge(token)).ok()??;
        String::from_utf8(bytes).ok()
    }

    /// The TLS-ALPN-01 certificate and key (one PEM) for `name` (lower
    /// case), if a challenge for it is pending here or at another replica.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<str>> {
        if let Some(pem) = self.alpn.load().get(name) {
            return Some(pem.clone());
        }
        let bytes = read_opt(&self.store.alpn(name)).ok()??;
        String::from_utf8(bytes).ok().map(Into::into)
    }

    pub(crate) fn put_http01(
        &self,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), CertsError> {
        write_atomic(
            &self.store.challenge(token),
            key_authorization.as_bytes(),
            0o600,
        )?;
        self.http.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(token.to_owned(), key_authorization.to_owned());
            m
        });
        Ok(())
    }

    pub(crate) fn put_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), CertsError> {
        let pem: Arc<str> = crate::x509::alpn_challenge_cert(name, digest)?.into();
        write_atomic(&self.store.alpn(name), pem.as_bytes(), 0o600)?;
        self.alpn.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(name.to_owned(), pem.clone());
            m
        });
        Ok(())
    }

    /// Forgets the challenges of a finished order.
    pub(crate) fn clear(&self, tokens: &[String], names: &[String]) {
        for t in tokens {
            let _ = std::fs::remove_file(self.store.challenge(t));
        }
        for n in names {
            let _ = std::fs::remove_file(self.store.alpn(n));
        }
        self.http.rcu(|m| {
            let mut m = HashMap::clone(m);
            tokens.iter().for_each(|t| {
                m.remove(t);
            });
            m
        });
        self.alpn.rcu(|m| {
            let mut m = HashMap::clone(m);
            names.iter().for_each(|n| {
                m.remove(n);
            });
            m
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_replica_answers_from_the_shared_storage() {
        let dir = tempfile::tempdir().unwrap();
        let ordering = Challenges::new(Store::open(dir.path()).unwrap());
        let other = Challenges::new(Store::open(dir.path()).unwrap());
        ordering.put_http01("tok-1_A", "tok-1_A.thumb").unwrap();
        assert_eq!(ordering.http01("tok-1_A").as_deref(), Some("tok-1_A.thumb"));
        assert_eq!(other.http01("tok-1_A").as_deref(), Some("tok-1_A.thumb"));
        assert_eq!(other.http01("../account.json"), None, "no path tricks");
        assert_eq!(other.http01("unknown"), None);

        ordering.put_tls_alpn01("hub.test", &[7u8; 32]).unwrap();
        let pem = other.tls_alpn01("hub.test").unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
        ordering.clear(&["tok-1_A".into()], &["hub.test".into()]);
        assert_eq!(other.http01("tok-1_A"), None);
        assert!(other.tls_alpn01("hub.test").is_none());
    }
}
