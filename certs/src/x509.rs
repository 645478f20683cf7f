//! Certificates as data: checking an issued chain before it is used, and
//! making the TLS-ALPN-01 challenge certificate.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _,
};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::CertsError;

/// A certificate chain and key that passed [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The names the leaf covers (its DNS SANs).
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The leaf's private key (PEM).
    pub key_pem: String,
}

/// Checks a chain and key before use: the leaf parses, covers every one of
/// `names`, is valid at `now`, and the key is the leaf's.
pub fn inspect(
    chain_pem: &str,
    key_pem: &str,
    names: &[String],
    now: SystemTime,
) -> Result<Issued, CertsError> {
    let bad = |why: String| CertsError::BadCertificate(why);
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| bad(format!("no PEM certificate: {e}")))?;
    let (_, leaf) =
        X509Certificate::from_der(&pem.contents).map_err(|e| bad(format!("bad leaf: {e}")))?;
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for name in names {
        if !sans.iter().any(|s| covers(s, name)) {
            return Err(bad(format!(
                "does not cover {name} (names: {})",
                sans.join(", ")
            )));
        }
    }
    let to_time =
        |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let not_before = to_time(leaf.validity().not_before.timestamp());
    let not_after = to_time(leaf.validity().not_after.timestamp());
    if now < not_before || now >= not_after {
        return Err(bad("not valid now".into()));
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("bad private key: {e}")))?;
    if key.der_bytes() != &*leaf.public_key().subject_public_key.data {
        return Err(bad("the private key is not the certificate's".into()));
    }
    Ok(Issued {
        names: sans,
        not_before,
        not_after,
        serial: leaf.raw_serial_as_string().replace(':', ""),
        issuer: leaf.issuer().to_string(),
        chain_pem: chain_pem.to_owned(),
        key_pem: key_pem.to_owned(),
    })
}

/// Whether SAN `san` covers `name` (`*.example.org` covers one label).
fn covers(san: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    match san.strip_prefix("*.") {
        Some(parent) => name.split_once('.').is_some_and(|(_, rest)| rest == parent),
        None => san == name,
    }
}

/// A self-signed certificate for `name` with the critical
/// `id-pe-acmeIdentifier` extension holding `digest` (SHA-256 of the key
/// authorization, RFC 8737 §3), and its key, as one PEM.
pub(crate) fn alpn_challenge_cert(name: &str, digest: &[u8]) -> Result<String, CertsError> {
    if digest.len() != 32 {
        return Err(CertsError::BadCertificate(
            "TLS-ALPN-01 digest is not 32 bytes".into(),
        ));
    }
    let failed =
        |e: rcgen::Error| CertsError::BadCertificate(format!("challenge certificate: {e}"));
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(failed)?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// A fresh P-256 key and a CSR for `names`, both for finalizing an order.
pub(crate) fn csr(names: &[String]) -> Result<(Vec<u8>, String), CertsError> {
    let failed = |e: rcgen::Error| CertsError::BadCertificate(format!("CSR: {e}"));
    let mut params = CertificateParams::new(names.to_vec()).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let csr = params.serialize_request(&key).map_err(failed)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `names` valid for `days`, and its key.
    pub(crate) fn self_signed(names: &[&str], days: i64) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = rcgen::date_time_ymd(2026, 1, 1);
        params.not_before = now;
        params.not_after = now + time_days(days);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn time_days(days: i64) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(days).unwrap() * 86_400)
    }

    fn jan(day: u64) -> SystemTime {
        // 2026-01-01T00:00:00Z is 1767225600.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + (day - 1) * 86_400)
    }

    #[test]
    fn a_good_chain_passes_and_reports_its_lifetime() {
        let (chain, key) = self_signed(&["hub.test", "*.apps.test"], 90);
        let names = vec!["hub.test".to_owned(), "x.apps.test".to_owned()];
        let issued = inspect(&chain, &key, &names, jan(2)).unwrap();
        assert_eq!(issued.not_before, jan(1));
        assert_eq!(issued.not_after, jan(91));
        assert_eq!(issued.names, ["hub.test", "*.apps.test"]);
    }

    #[test]
    fn wrong_names_keys_and_times_are_refused() {
        let (chain, key) = self_signed(&["hub.test"], 90);
        let (_, other_key) = self_signed(&["hub.test"], 90);
        let names = vec!["hub.test".to_owned()];
        let err = |r: Result<Issued, CertsError>| r.unwrap_err().to_string();
        assert!(
            err(inspect(&chain, &key, &["other.test".into()], jan(2))).contains("does not cover")
        );
        assert!(err(inspect(&chain, &other_key, &names, jan(2))).contains("not the certificate's"));
        assert!(err(inspect(&chain, &key, &names, jan(200))).contains("not valid now"));
        assert!(err(inspect("garbage", &key, &names, jan(2))).contains("no PEM"));
        assert!(!covers("*.test", "a.b.test"));
    }

    #[test]
    fn the_alpn_certificate_is_for_one_name() {
        let pem = alpn_challenge_cert("hub.test", &[1u8; 32]).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&p.contents).unwrap();
        let acme = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(acme.critical);
        assert!(alpn_challenge_cert("hub.test", &[1u8; 3]).is_err());
    }
}
