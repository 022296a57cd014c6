//! What staging hands the write protocol: one identity's new files, in memory until the
//! protocol writes them.

use zeroize::Zeroizing;

use crate::digest::Digest;
use crate::fsio::IdentityDir;
use crate::names::IdentityId;
use crate::write::record::entries::{Change, FileChange};
use crate::write::record::run_report::Details;

/// Bytes that must not be printed: a new key, token or certificate on its way to disk. They
/// are read only through [`Secret::expose`], and zeroed when the value is dropped.
pub(crate) struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// The bytes, to be written to their file (and nowhere else).
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret([{} bytes elided])", self.0.len())
    }
}

/// A replacement ready to be committed: one identity's new files.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) id: IdentityId,
    /// The identity's directory, as opened when it was staged: every later step works in it.
    pub(crate) dir: IdentityDir,
    pub(crate) files: Vec<NewFile>,
    /// What the new credentials are, for the report (no secret).
    pub(crate) details: Details,
}

/// One file of a replacement: its name, the digest of the file it replaces, its new bytes.
#[derive(Debug)]
pub(crate) struct NewFile {
    pub(crate) name: String,
    pub(crate) old: Digest,
    pub(crate) bytes: Secret,
}

impl Staged {
    pub(crate) fn change(&self) -> Change {
        Change {
            id: self.id.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileChange {
                    name: f.name.clone(),
                    old_sha256: f.old,
                    new_sha256: Digest::of(f.bytes.expose()),
                })
                .collect(),
        }
    }
}
