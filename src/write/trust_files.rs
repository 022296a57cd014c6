//! An identity's trust file, `ca.pem` (where one exists), kept equal to `ca/bundle.pem` by the
//! CA rotation stages: staged like any credential, so it changes through the journaled batches
//! (backed up, replaced by a rename, rolled back). A `ca.pem` that is a link, or anything but a
//! regular file, is a problem for that identity and is never followed.

use std::collections::BTreeMap;

use super::journal::{NewFile, Secret, Staged};
use super::work::{NotStaged, Work};
use crate::digest::Digest;
use crate::fsio::{RootDir, Slot};
use crate::names::IdentityId;

/// An identity's trust file.
pub(crate) const TRUST_FILE: &str = "ca.pem";

/// Makes each identity's `ca.pem` the bundle.
pub(crate) struct TrustFiles {
    pub(crate) fleet: RootDir,
    pub(crate) bundle: Vec<u8>,
}

/// What an identity's `ca.pem` held when it was chosen.
pub(crate) type Seen = Digest;

impl TrustFiles {
    /// Of `ids`, those whose `ca.pem` differs from the bundle (with what it holds), and those
    /// whose `ca.pem` cannot be used (with why).
    pub(crate) fn targets<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a IdentityId>,
    ) -> (BTreeMap<IdentityId, Seen>, Vec<(IdentityId, String)>) {
        let mut items = BTreeMap::new();
        let mut refused = Vec::new();
        let wanted = Digest::of(&self.bundle);
        for id in ids {
            let Ok(dir) = self.fleet.identity(id) else {
                continue;
            };
            match dir.read(TRUST_FILE) {
                Slot::Absent => {}
                Slot::Present(bytes) if Digest::of(&bytes) == wanted => {}
                Slot::Present(bytes) => {
                    items.insert(id.clone(), Digest::of(&bytes));
                }
                Slot::Unusable(why) => refused.push((id.clone(), unusable(&why))),
                Slot::NotReadable => refused.push((
                    id.clone(),
                    format!("{TRUST_FILE} {}", crate::fsio::NOT_READABLE),
                )),
            }
        }
        (items, refused)
    }
}

fn unusable(why: &str) -> String {
    format!(
        "{TRUST_FILE} {why}: it is left alone (never followed); make it a regular file holding \
         ca/bundle.pem"
    )
}

impl Work for TrustFiles {
    type Item = Seen;

    fn stage(&self, id: &IdentityId, seen: &Seen) -> Result<Staged, NotStaged> {
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
