//! The certs crate's errors: each names what failed and, for files, where.

use std::path::{Path, PathBuf};

/// Why obtaining, storing or checking a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The ACME server refused a request or could not be reached.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// A file in the storage directory could not be read or written (a full
    /// disk, a read-only volume, permissions).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored or issued certificate is not fit to serve.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// An authorization or the order ended invalid (a failed validation).
    #[error("validation failed for {name}: {detail}")]
    Validation {
        /// The identifier.
        name: String,
        /// What the CA said.
        detail: String,
    },
    /// The CA offers none of the challenge types hubgate answers.
    #[error("no {kind} challenge offered for {name}")]
    NoChallenge {
        /// The identifier.
        name: String,
        /// The challenge type wanted.
        kind: &'static str,
    },
    /// The stored account does not parse.
    #[error("account file {}: {source}", path.display())]
    Account {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A name no certificate can be ordered for.
    #[error("{0}")]
    BadName(String),
    /// The trust anchors for the ACME server are not usable.
    #[error("ACME server CA: {0}")]
    Roots(String),
}

impl CertsError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
