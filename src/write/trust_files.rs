//! An identity's trust file, `ca.pem` (where one exists), kept equal to `ca/bundle.pem` by the
//! CA rotation stages: staged like any credential, so it changes through the journaled batches
//! (backed up, replaced by a rename, rolled back). A `ca.pem` that is a link, or anything but a
//! regular file, is a problem for that identity and is never followed.

use super::journal::{NewFile, Secret, Staged};
use super::work::{NotStaged, Work};
use crate::digest::Digest;
use crate::fsio::{RootDir, Slot};
use crate::names::IdentityId;

/// An identity's trust file.
pub(crate) const TRUST_FILE: &str = "ca.pem";

/// Makes each identity's `ca.pem` the bundle.
pub(crate) struct TrustFiles {
    fleet: RootDir,
    bundle: Vec<u8>,
    wanted: Digest,
}

/// What an identity's `ca.pem` held when it was chosen.
pub(crate) type Seen = Digest;

impl TrustFiles {
    /// The trust files beneath `fleet`, to hold `bundle`.
    pub(crate) fn new(fleet: RootDir, bundle: Vec<u8>) -> TrustFiles {
        let wanted = Digest::of(&bundle);
        TrustFiles {
            fleet,
            bundle,
            wanted,
        }
    }

    /// What `id`'s `ca.pem` asks of the run: nothing (none, or it holds the bundle, or the
    /// identity's directory cannot be opened), a change from what it holds now, or a refusal
    /// with why (it cannot be used).
    pub(crate) fn target(&self, id: &IdentityId) -> Option<Result<Seen, String>> {
        let dir = self.fleet.identity(id).ok()?;
        match dir.read(TRUST_FILE) {
            Slot::Absent => None,
            Slot::Present(bytes) => {
                let seen = Digest::of(&bytes);
                (seen != self.wanted).then_some(Ok(seen))
            }
            Slot::Unusable(why) => Some(Err(unusable(&why))),
            Slot::NotReadable => Some(Err(format!("{TRUST_FILE} {}", crate::fsio::NOT_READABLE))),
        }
    }
}

fn unusable(why: &str) -> String {
    format!(
        "{TRUST_FILE} {why}: it is left alone (never followed); make it a regular file holding \
         ca/bundle.pem"
    )
}

impl Work for TrustFiles {
    /// What [`TrustFiles::target`] found: a refusal is reported skipped, with why.
    type Item = Result<Seen, String>;

    fn stage(&self, id: &IdentityId, seen: &Self::Item) -> Result<Staged, NotStaged> {
        let seen = seen
            .as_ref()
            .map_err(|why| NotStaged::Skipped(why.clone()))?;
        let dir = super::rotation::open_identity(&self.fleet, id)?;
        match dir.read(TRUST_FILE) {
            Slot::Present(bytes) if Digest::of(&bytes) == *seen => {}
            Slot::Unusable(why) => return Err(NotStaged::Failed(unusable(&why))),
            _ => {
                return Err(NotStaged::Skipped(format!(
                    "{TRUST_FILE} changed while the run read the fleet: left alone"
                )));
            }
        }
        Ok(Staged {
            id: id.clone(),
            dir,
            files: vec![NewFile {
                name: TRUST_FILE.to_string(),
                old: *seen,
                bytes: Secret::new(self.bundle.clone()),
            }],
            details: Default::default(),
        })
    }
}
