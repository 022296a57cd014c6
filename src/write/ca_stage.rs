//! A CA rotation stage as a writing run: `ca/` changed in one step (`ca_tree`), then each
//! identity's `ca.pem` through the journaled batches (`trust_files`). A dry run changes nothing
//! and says what the stage would do.

use anyhow::Result;

use super::ca_tree::{self, CaChange};
use super::started::Started;

impl Started {
    /// Changes `ca/` as `change` says, journaled in this run (a dry run: nothing).
    pub(crate) fn change_ca(&mut self, change: &CaChange) -> Result<()> {
        let (root, record) = self.record();
        let root = root.to_path_buf();
        if let Some((dir, journal)) = record {
            let dir = dir.clone();
            ca_tree::change(journal, &root, &dir, change)?;
        }
        Ok(())
    }
}
