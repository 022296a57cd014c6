//! What the journal says of a batch's deploy hook calls for an identity that ended wholly old.

use anyhow::Result;

use crate::names::IdentityId;
use crate::write::record::calls::HookCall;
use crate::write::record::entries::{Journal, Record};

/// Closes the deploy hook calls journaled for identity `id` when it ended wholly old after all
/// (its renames failed, or a replay could not finish them): hooks run only for an identity a run
/// changed. Journaled before the batch's `commit`, so that none is ever pending.
pub(super) fn drop_hooks(journal: &mut Journal, calls: &[HookCall], id: &IdentityId) -> Result<()> {
    let own = calls.iter().filter(|c| c.id.as_ref() == Some(id));
    for c in own {
        journal.append(&Record::HookDropped {
            call: c.call,
            reason: "its identity was not changed at its place, so it has nothing to deploy"
                .to_string(),
        })?;
    }
    Ok(())
}
