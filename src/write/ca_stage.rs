//! A CA rotation stage as a writing run: `ca/` changed in one step (`ca_tree`), then each
//! identity's `ca.pem` through the journaled batches (`trust_files`). A dry run changes nothing
//! and says what the stage would do.

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::ca_tree::{self, CaChange};
use super::record::entries::records;
use super::started::Started;
use crate::ca::{CaDir, Stage};
use crate::store::RunDir;

impl super::WriteRun {
    /// This run changes `ca/bundle.pem`: the policy's `ca_reload` runs once at its end, as a
    /// post hook (journaled when the run starts, pending if it fails).
    pub(crate) fn call_ca_reload(&mut self) {
        self.hooks.call_ca_reload();
    }
}

impl Started {
    /// Changes `ca/` as `change` says, journaled in this run (a dry run: nothing).
    pub(crate) fn change_ca(&mut self, change: &CaChange) -> Result<()> {
        let (root, record) = self.record();
        let root = root.to_path_buf();
        if let Some((dir, journal)) = record {
            let dir = dir.clone();
            ca_tree::change(journal, &root, &dir, change)?;
        }
        self.changed_ca();
        Ok(())
    }
}

/// What rolling back run `run` does to `ca/`, if it was a CA rotation stage that changed it:
/// `ca/` back to the tree the run replaced (kept as its `ca-old/`). Refused when `ca/` is no
/// longer at the stage the run left (a later stage ran: roll that back first), and for a
/// `finish`, whose previous CA's key is gone.
pub(crate) fn ca_rollback(root: &Path, run: &RunDir) -> Result<Option<CaChange>> {
    let Some((from, to)) = ca_tree::committed(records(&run.journal())?)? else {
        return Ok(None);
    };
    if from == Stage::Switched && to == Stage::Steady {
        bail!(
            "run {} finished a CA rotation: the previous CA's key is removed, so it cannot be \
             rolled back; start a new rotation (rekey ca begin) instead",
            run.id()
        );
    }
    let now = CaDir::of(root).stage().map_err(|e| anyhow!("{e}"))?;
    if now == from {
        // Already back where the run found it (rolled back before).
        return Ok(None);
    }
    if now != to {
        bail!(
            "run {} left the CA rotation {}, and it is {} now: roll back the later stage's run \
             first (see rekey runs)",
            run.id(),
            to.name(),
            now.name()
        );
    }
    let old = run.ca_old();
    if !old.is_dir() {
        bail!(
            "{} is missing: run {} cannot be rolled back (was it pruned?)",
            old.display(),
            run.id()
        );
    }
    Ok(Some(CaChange {
        from: to,
        to: from,
        tree: ca_tree::Tree::of(&old)?,
        purge: None,
    }))
}
