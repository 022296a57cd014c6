//! Replaying a run's journal after a crash: each batch it left unfinished finished or undone
//! through the identities' directory handles, what was not finished journaled with why, and the
//! run closed.

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use super::dropped::drop_hooks;
use super::files::{Temps, discard, finish, undone_in};
use crate::fsio::{self, RootDir};
use crate::write::record::entries::{Change, Failure, Journal, Record};
use crate::write::record::left::{INTERRUPTED, Left, UNFINISHED, Unfinished};

/// An identity a replay did not finish, and why.
pub(crate) type NotFinished = (Change, String);

/// Replays a run's journal: finishes or undoes every unfinished batch `left` found in it and
/// closes the run. Returns the identities finished (now wholly new) and those that are not,
/// each with why (the run's reason where it journaled one). An identity whose directory can no
/// longer be opened beneath the root without following a link is not finished, and nothing is
/// done outside the fleet. A batch closed by its `commit` gets a `failed` record first, naming
/// the identities it did not finish, so that a later replay of the same journal (killed before
/// its report) says what this one says.
pub(crate) fn replay(
    journal_path: &Path,
    left: &Left,
    root: &Path,
    backup: &Path,
) -> Result<(Vec<Change>, Vec<NotFinished>)> {
    let temps = left.start.as_ref().map_or(Temps::of_journal("", 1), |s| {
        Temps::of_journal(&s.run_id, s.version)
    });
    let mut journal = Journal::open(journal_path)?;
    let fleet = RootDir::open(root)
        .map_err(|e| anyhow::anyhow!("failed to open fleet root {}: {e}", root.display()))?;
    let open = |c: &Change| fleet.identity(&c.id).ok();
    let (mut finished, mut undone) = (Vec::new(), Vec::new());
    let why = |c: &Change, default: &str| left.failure_of(&c.id).unwrap_or(default).to_string();
    // Undone identities of a batch whose finish closes it, for its `failed` record.
    let mut owed: Vec<Failure> = Vec::new();
    for step in &left.unfinished {
        match step {
            Unfinished::Undo { batch, changes } => {
                let dirs: Vec<Option<fsio::IdentityDir>> = changes.par_iter().map(open).collect();
                changes.par_iter().zip(&dirs).for_each(|(c, dir)| {
                    if let Some(dir) = dir {
                        discard(dir, backup, &temps, c);
                    }
                });
                let mut changed = fsio::Changed::default();
                for (c, dir) in changes.iter().zip(&dirs) {
                    if let Some(dir) = dir {
                        undone_in(&mut changed, dir, &c.id, backup);
                    }
                }
                fleet.make_durable(&changed)?;
                let reasons = changes.iter().map(|c| (c.clone(), why(c, INTERRUPTED)));
                if left.undo_closes(*batch) {
                    journal.append(&Record::Abort {
                        batch: *batch,
                        reason: Some(INTERRUPTED.to_string()),
                    })?;
                } else {
                    owed.extend(
                        reasons
                            .clone()
                            .map(|(c, reason)| Failure { id: c.id, reason }),
                    );
                }
                undone.extend(reasons);
            }
            Unfinished::Finish { batch, changes } => {
                let dirs: Vec<Option<fsio::IdentityDir>> = changes.par_iter().map(open).collect();
                // One the run journaled as failed after `ready` (its directory moved away during
                // its renames, which went there) is never finished here, wherever it is now.
                let results: Vec<bool> = changes
                    .par_iter()
                    .zip(&dirs)
                    .map(|(c, dir)| {
                        left.failure_of(&c.id).is_none()
                            && dir
                                .as_ref()
                                .is_some_and(|dir| finish(dir, backup, &temps, c).is_ok())
                    })
                    .collect();
                let mut changed = fsio::Changed::default();
                for (c, dir) in changes.iter().zip(&dirs) {
                    if let Some(dir) = dir {
                        undone_in(&mut changed, dir, &c.id, backup);
                    }
                }
                fleet.make_durable(&changed)?;
                let calls = left.hooks_of(*batch);
                let mut failed = std::mem::take(&mut owed);
                for (c, ok) in changes.iter().zip(results) {
                    if ok {
                        finished.push(c.clone());
                        continue;
                    }
                    if left.failure_of(&c.id).is_none() {
                        drop_hooks(&mut journal, calls, &c.id)?;
                    }
                    let reason = why(c, UNFINISHED);
                    failed.push(Failure {
                        id: c.id.clone(),
                        reason: reason.clone(),
                    });
                    undone.push((c.clone(), reason));
                }
                if !failed.is_empty() {
                    journal.append(&Record::Failed {
                        batch: *batch,
                        identities: failed,
                    })?;
                }
                journal.append(&Record::Commit { batch: *batch })?;
            }
        }
    }
    if !left.ended {
        journal.append(&Record::End { recovered: true })?;
    }
    Ok((finished, undone))
}
