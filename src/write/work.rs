//! What a writing command changes, identity by identity (a [`Work`]): it stages new files in
//! memory, or says why not; the batch loop and the journal put them on disk.

use super::journal::Staged;
use crate::names::IdentityId;

/// Why an identity was not staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotStaged {
    /// Left alone on purpose (changed since the plan, a problem now): reported, not an error.
    Skipped(String),
    /// Something went wrong preparing it.
    Failed(String),
}

/// What a writing command changes, identity by identity: it prepares new files in memory; the
/// loop and the journal put them on disk.
pub(crate) trait Work: Sync {
    type Item: Sync;
    fn stage(&self, id: &IdentityId, item: &Self::Item) -> Result<Staged, NotStaged>;
}

/// A [`Work`] whose items may each have been refused before staging, with why: a refused item
/// is reported skipped with that reason, the others are staged by the work itself.
pub(crate) struct OrSkipped<'a, W>(pub(crate) &'a W);

impl<W: Work> Work for OrSkipped<'_, W> {
    type Item = Result<W::Item, String>;

    fn stage(&self, id: &IdentityId, item: &Self::Item) -> Result<Staged, NotStaged> {
        match item {
            Ok(item) => self.0.stage(id, item),
            Err(why) => Err(NotStaged::Skipped(why.clone())),
        }
    }
}
