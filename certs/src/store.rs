//! The storage directory (a volume in production, shared by replicas):
//!
//! ```text
//! <dir>/                      0700
//!   accounts/<hash>.json      0600  ACME account credentials, per directory URL
//!   certs/<id>/cert.pem       0644  the chain, leaf first
//!   certs/<id>/key.pem        0600  its private key
//!   challenges/<token>        0600  HTTP-01 key authorizations (any replica answers)
//!   alpn/<name>.pem           0600  TLS-ALPN-01 challenge certificate and key
//!   locks/<id>.lock           0600  who is ordering <id> (see `lock`)
//! ```
//!
//! Every write goes to a temporary file in the same directory, is synced and
//! renamed over the target: a reader (another replica) sees the old file or
//! the new one, never half of one. `<id>` is the certificate's first name.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use crate::CertsError;

/// A chain and its key, PEM bytes.
pub(crate) type Pem = (Vec<u8>, Vec<u8>);

/// The storage directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating, 0700) the directory and its subdirectories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CertsError> {
        let root = root.into();
        for dir in ["", "accounts", "certs", "challenges", "alpn", "locks"] {
            let path = root.join(dir);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| CertsError::io("create", &path, e))?;
        }
        Ok(Self { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn accounts(&self) -> PathBuf {
        self.root.join("accounts")
    }

    pub(crate) fn cert_dir(&self, id: &str) -> PathBuf {
        self.root.join("certs").join(safe(id))
    }

    pub(crate) fn challenge(&self, token: &str) -> PathBuf {
        self.root.join("challenges").join(safe(token))
    }

    pub(crate) fn alpn(&self, name: &str) -> PathBuf {
        self.root.join("alpn").join(format!("{}.pem", safe(name)))
    }

    pub(crate) fn lock(&self, id: &str) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", safe(id)))
    }

    /// The stored chain and key of certificate `id`, if both are there.
    pub(crate) fn read_cert(&self, id: &str) -> Result<Option<Pem>, CertsError> {
        let dir = self.cert_dir(id);
        match (
            read_opt(&dir.join("cert.pem"))?,
            read_opt(&dir.join("key.pem"))?,
        ) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            _ => Ok(None),
        }
    }

    /// Stores a new chain and key for `id` (key first: a reader that sees
    /// the new chain finds its key).
    pub(crate) fn write_cert(&self, id: &str, chain: &[u8], key: &[u8]) -> Result<(), CertsError> {
        let dir = self.cert_dir(id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CertsError::io("create", &dir, e))?;
        write_atomic(&dir.join("key.pem"), key, 0o600)?;
        write_atomic(&dir.join("cert.pem"), chain, 0o644)
    }
}

/// A file name from an outside string: path separators and dots at the
/// start cannot climb out of the directory.
fn safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.*".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_start_matches('.').replace('*', "_wildcard_")
}

/// The file's bytes, `None` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, CertsError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CertsError::io("read", path, e)),
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename
/// ([`crate::files::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertsError> {
    crate::files::write_atomic(path, bytes, mode).map_err(|e| CertsError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn certificates_round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("acme")).unwrap();
        assert_eq!(store.root().metadata().unwrap().mode() & 0o777, 0o700);
        assert!(store.read_cert("hub.example.org").unwrap().is_none());
        store
            .write_cert("hub.example.org", b"chain", b"key")
            .unwrap();
        store
            .write_cert("hub.example.org", b"chain2", b"key2")
            .unwrap();
        let (c, k) = store.read_cert("hub.example.org").unwrap().unwrap();
        assert_eq!((c.as_slice(), k.as_slice()), (&b"chain2"[..], &b"key2"[..]));
        let key = store.cert_dir("hub.example.org").join("key.pem");
        assert_eq!(key.metadata().unwrap().mode() & 0o777, 0o600);
        let leftovers = std::fs::read_dir(store.cert_dir("hub.example.org"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 2, "no temporary files left behind");
    }

    #[test]
    fn outside_names_stay_inside_the_directory() {
        assert_eq!(safe("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe("*.example.org"), "_wildcard_.example.org");
        assert_eq!(safe("a/b"), "a_b");
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let err = write_atomic(Path::new("/nonexistent-dir/x"), b"", 0o600).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }
}
