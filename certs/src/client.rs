//! The HTTPS client instant-acme talks to the ACME server through: the web
//! PKI roots for Let's Encrypt, or the CA the binary was given
//! (`--acme-ca-file`: Pebble in tests, an internal CA in an enterprise).

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::CertsError;

/// An HTTPS-only client trusting `ca_pem` (PEM certificates), or the web PKI
/// roots without it.
pub(crate) fn https(ca_pem: Option<&[u8]>) -> Result<Box<dyn HttpClient>, CertsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| CertsError::Roots(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| CertsError::Roots(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(CertsError::Roots("no certificate in the CA file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}
