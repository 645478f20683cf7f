//! What the binary reads from its user, and how it says one is wrong: a
//! flag error and a named file. A leaf: every command's module uses it.

use std::path::Path;

use anyhow::Context as _;

/// A flag value that is wrong: reported in one line with exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

/// The bytes of `path`; the error names the file as `what`.
pub(crate) fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}
