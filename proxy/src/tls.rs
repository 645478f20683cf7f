//! TLS: the live certificate map behind one rustls `ServerConfig`, and the
//! client configurations for `https` upstreams.
//!
//! [`CertResolver`] holds an `ArcSwap<CertSet>`: a handshake does one
//! `load()`; a certificate source (static files now, ACME later) builds a
//! whole new set and swaps it in without touching listeners or open
//! connections. Everything takes PEM bytes; reading files is the binary's job.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why TLS material was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM input holds no certificate.
    #[error("no certificate found in PEM input")]
    NoCertificate,
    /// The PEM input could not be parsed.
    #[error("bad PEM input: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    /// rustls rejected the key, certificate or configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key into a key rustls serves.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let signing = provider().key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match()?;
    Ok(certified)
}

/// The same for an ACME TLS-ALPN-01 challenge certificate, without the key
/// match check: webpki refuses to parse a leaf with the critical
/// `id-pe-acmeIdentifier` extension (RFC 8737 §3) that such a certificate
/// must carry. The certificate and key come from the challenge code, which
/// made them together.
pub fn challenge_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    Ok(CertifiedKey::new(
        chain,
        provider().key_provider.load_private_key(key)?,
    ))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}

fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Certificates by server name, plus the one served when SNI names none of
/// them (or is absent).
#[derive(Default, Clone)]
pub struct CertSet {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// A set serving `key` for every name.
    pub fn single(key: Arc<CertifiedKey>) -> Self {
        Self {
            by_name: HashMap::new(),
            default: Some(key),
        }
    }

    /// Adds `key` for `name` (lower-cased; `*.example.org` is a wildcard).
    pub fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.by_name.insert(name.to_ascii_lowercase(), key);
    }

    /// Serves `key` to clients whose SNI names no certificate (or that send
    /// none), unless the set already has such a default.
    pub fn default_to(&mut self, key: Arc<CertifiedKey>) {
        self.default.get_or_insert(key);
    }

    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = name.and_then(|n| {
            let n = n.to_ascii_lowercase();
            self.by_name.get(&n).or_else(|| {
                let (_, parent) = n.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        by_name.or(self.default.as_ref()).cloned()
    }
}

/// The ALPN protocol of ACME TLS-ALPN-01 validations (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Looks up the TLS-ALPN-01 challenge certificate for a server name.
pub type AlpnChallenges = Arc<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

/// The certificate resolver: swap a new [`CertSet`] in at any time.
#[derive(Default)]
pub struct CertResolver {
    set: ArcSwap<CertSet>,
    alpn: Option<AlpnChallenges>,
}

impl CertResolver {
    /// A resolver serving `set`.
    pub fn new(set: CertSet) -> Self {
        Self {
            set: ArcSwap::from_pointee(set),
            alpn: None,
        }
    }

    /// A resolver that also answers TLS-ALPN-01 challenges: a ClientHello
    /// offering exactly `acme-tls/1` gets `challenges`' certificate for its
    /// server name (and nothing else).
    pub fn with_alpn_challenges(set: CertSet, challenges: AlpnChallenges) -> Self {
        Self {
            set: ArcSwap::from_pointee(set),
            alpn: Some(challenges),
        }
    }

    /// Whether TLS-ALPN-01 challenges are answered (then `acme-tls/1` is
    /// among the server's ALPN protocols).
    pub fn answers_alpn_challenges(&self) -> bool {
        self.alpn.is_some()
    }

    /// Publishes `set` for every following handshake.
    pub fn store(&self, set: CertSet) {
        self.set.store(Arc::new(set));
    }
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("names", &self.set.load().by_name.len())
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.alpn {
            let mut protocols = hello.alpn().into_iter().flatten();
            let (first, second) = (protocols.next(), protocols.next());
            if first == Some(ACME_TLS_ALPN) && second.is_none() {
                return challenges(&hello.server_name()?.to_ascii_lowercase());
            }
        }
        self.set.load().find(hello.server_name())
    }
}

/// Client certificate policy for a TLS listener (`--ssl-ca`,
/// `--ssl-request-cert`, `--ssl-reject-unauthorized`).
pub struct ClientAuth<'a> {
    /// CA bundle (PEM) that client certificates must chain to.
    pub ca_pem: &'a [u8],
    /// Refuse clients without a valid certificate.
    pub required: bool,
}

/// A server configuration (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) over
/// `resolver`.
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_auth: Option<ClientAuth<'_>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let roots = Arc::new(root_store(auth.ca_pem)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let alpn_challenges = resolver.answers_alpn_challenges();
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if alpn_challenges {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// Options for `https` upstreams (`--client-ssl-*`, `--insecure`).
#[derive(Default)]
pub struct UpstreamTls<'a> {
    /// The CAs (PEM) trusted instead of the web PKI roots.
    pub ca_pem: Option<&'a [u8]>,
    /// Client certificate chain and key (PEM) to present.
    pub client_cert: Option<(&'a [u8], &'a [u8])>,
    /// Accept any upstream certificate.
    pub insecure: bool,
}

/// A client configuration for `https` upstreams.
pub fn client_config(opts: &UpstreamTls<'_>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    // As node's `ca` option (configurable-http-proxy's `--client-ssl-ca`):
    // the given CAs replace the web roots rather than joining them.
    let roots = match opts.ca_pem {
        Some(ca) => root_store(ca)?,
        None => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match opts.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, PrivateKeyDer::from_pem_slice(key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The default upstream client configuration: web PKI roots.
pub(crate) fn default_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(mut c) => {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        }
        // ring supports the default protocol versions; this cannot fail.
        Err(e) => unreachable!("rustls rejected its own defaults: {e}"),
    }
}

/// `--insecure`: accepts any upstream certificate, still checking that the
/// handshake signatures are valid.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = include_bytes!("../../tests/fixtures/localhost.pem");
    const KEY: &[u8] = include_bytes!("../../tests/fixtures/localhost.key");

    /// Runs a handshake in memory; the server's negotiated ALPN protocol.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        alpn: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let mut client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        client_config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name =
            ServerName::try_from("hub.test").map_err(|_| rustls::Error::General("name".into()))?;
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name)?;
        let mut server = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client
                .write_tls(&mut buf)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            server
                .read_tls(&mut buf.as_slice())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            server.process_new_packets()?;
            let mut back = Vec::new();
            server
                .write_tls(&mut back)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            client
                .read_tls(&mut back.as_slice())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(server.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    #[test]
    fn an_acme_tls_alpn_hello_gets_the_challenge_certificate_only() {
        let challenge = Arc::new(certified_key(CERT, KEY).unwrap());
        let hook: AlpnChallenges =
            Arc::new(move |name| (name == "hub.test").then(|| challenge.clone()));
        let resolver = Arc::new(CertResolver::with_alpn_challenges(CertSet::default(), hook));
        let config = server_config(resolver, None).unwrap();
        assert!(config.alpn_protocols.iter().any(|p| p == ACME_TLS_ALPN));
        assert_eq!(
            handshake(config.clone(), &[ACME_TLS_ALPN])
                .unwrap()
                .as_deref(),
            Some(ACME_TLS_ALPN)
        );
        // An ordinary client gets the (here empty) certificate set, not the challenge.
        assert!(handshake(config, &[b"h2", b"http/1.1"]).is_err());
    }
}
