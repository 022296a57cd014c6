//! The second pass over an interrupted run's journal: each closed batch handed over as one
//! part (what it made new, what it failed and left untouched, each with why), and the reasons a
//! replay gives where the journal says none.

use std::collections::{BTreeMap, BTreeSet};

use crate::write::record::entries::{Change, Failure, LeftAs, Record, Untouched};

/// What the second pass over a journal hands a replayed report, in the journal's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// A committed batch: the identities it made wholly new, then the others it named, each
    /// with why: those it prepared and failed (before its files were ready, or when their
    /// renames found the directory moved away) and those it left untouched.
    Committed(u32, Vec<Change>, Vec<Untouched>),
    /// The identities a batch left as they were: before staging them (an `unchanged` record,
    /// journaled before the batch's `prepare`), and, of a batch that was undone, those it
    /// prepared (its `abort` says why).
    Unchanged(u32, Vec<Untouched>),
}

/// The batches of the second pass still to be handed over: what each prepared, made ready and
/// said had failed, until its `commit` or its `abort`.
#[derive(Default)]
pub(super) struct Closing {
    prepared: BTreeMap<u32, Vec<Change>>,
    ready: BTreeMap<u32, BTreeSet<String>>,
    failed: BTreeMap<u32, BTreeMap<String, String>>,
    /// A closed batch's identities left untouched: handed over with it, to be sorted with it.
    untouched: BTreeMap<u32, Vec<Untouched>>,
}

impl Closing {
    /// Notes `record`; hands over the part it completes, if it completes one.
    /// `closed`: the batches the first pass found closed by a `commit`, and by an `abort` that
    /// says why.
    pub(super) fn take(
        &mut self,
        (committed, aborted): (&BTreeSet<u32>, &BTreeSet<u32>),
        record: Record,
    ) -> Option<Part> {
        match record {
            Record::Prepare { batch, identities }
                if committed.contains(&batch) || aborted.contains(&batch) =>
            {
                self.prepared.entry(batch).or_default().extend(identities);
                None
            }
            Record::Ready { batch, identities } if self.prepared.contains_key(&batch) => {
                self.ready
                    .entry(batch)
                    .or_insert_with(|| identities.into_iter().collect());
                None
            }
            Record::Failed { batch, identities } if self.prepared.contains_key(&batch) => {
                let failed = self.failed.entry(batch).or_default();
                for Failure { id, reason } in identities {
                    failed.entry(id.to_string()).or_insert(reason);
                }
                None
            }
            Record::Commit { batch } if committed.contains(&batch) => {
                let changes = self.prepared.remove(&batch)?;
                let ready = self.ready.remove(&batch).unwrap_or_default();
                let failed = self.failed.remove(&batch).unwrap_or_default();
                let untouched = self.untouched.remove(&batch).unwrap_or_default();
                Some(committed_part(batch, changes, (&ready, &failed), untouched))
            }
            Record::Abort {
                batch,
                reason: Some(reason),
            } if aborted.contains(&batch) => {
                // Each identity it staged with the reason of its undoing, but those whose own
                // failure came first (as the run reports them).
                let changes = self.prepared.remove(&batch)?;
                self.ready.remove(&batch);
                let failed = self.failed.remove(&batch).unwrap_or_default();
                let left = |c: Change| {
                    let reason = failed.get(&c.key()).unwrap_or(&reason).clone();
                    Untouched {
                        id: c.id,
                        left: LeftAs::Failed,
                        reason,
                    }
                };
                let mut lines: Vec<Untouched> = changes.into_iter().map(left).collect();
                lines.extend(self.untouched.remove(&batch).unwrap_or_default());
                Some(Part::Unchanged(batch, lines))
            }
            Record::Unchanged { batch, identities }
                if committed.contains(&batch) || aborted.contains(&batch) =>
            {
                self.untouched.entry(batch).or_default().extend(identities);
                None
            }
            Record::Unchanged { batch, identities } => Some(Part::Unchanged(batch, identities)),
            _ => None,
        }
    }
}

/// Why a replay reports an identity it undid: what its `abort` says.
pub(crate) const INTERRUPTED: &str = "interrupted before its files were replaced: left as it was";

/// Why a replay reports an identity of a ready batch whose renames it could not finish (its
/// temporary files gone or changed, or its directory no longer at its name).
pub(crate) const UNFINISHED: &str = "interrupted during its renames, and its new files were no \
     longer where they were staged (its directory moved away, or changed): what is at its name \
     was not rotated";

/// Why a replay reports an identity failed that a committed batch prepared and did not make
/// ready, when its journal does not say (a journal before version 3).
pub(crate) const UNREADY: &str = "failed before its new files were ready: left as it was (the \
     run ended before its report said why)";

/// A committed batch's part: done, each identity its `ready` named that no `failed` record
/// names; failed, each other one it prepared, with the reason journaled for it; then those it
/// left `untouched`.
fn committed_part(
    batch: u32,
    changes: Vec<Change>,
    (ready, failed): (&BTreeSet<String>, &BTreeMap<String, String>),
    untouched: Vec<Untouched>,
) -> Part {
    let (mut done, mut lost) = (Vec::new(), Vec::new());
    for change in changes {
        let key = change.key();
        match failed.get(&key) {
            None if ready.contains(&key) => done.push(change),
            why => lost.push(Untouched {
                id: change.id,
                left: LeftAs::Failed,
                reason: why.map_or(UNREADY, String::as_str).to_string(),
            }),
        }
    }
    lost.extend(untouched);
    Part::Committed(batch, done, lost)
}
