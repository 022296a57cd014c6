//! What an interrupted run's journal leaves to its replay, read a line at a time: a first pass
//! notes the run's start, its last change of `ca/`, whether it stopped early and the batches
//! still open (a batch's records are consecutive, so about one); a second hands over, batch by
//! batch, the identities each committed batch made wholly new and those it failed (with why),
//! the identities each batch the run undid had prepared, and those each batch left untouched. A
//! journal holds a record per batch: a replay never holds it whole, whatever the fleet's size.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use std::path::Path;

use super::calls::HookCall;
use super::entries::{Change, DAMAGED, Failure, Record, VERSION};
use crate::names::IdentityId;

mod parts;

use parts::Closing;
#[cfg(test)]
use parts::UNREADY;
pub(crate) use parts::{INTERRUPTED, Part, UNFINISHED};

/// What replay must do for one unfinished batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unfinished {
    /// `ready` was journaled: finish these identities' renames.
    Finish { batch: u32, changes: Vec<Change> },
    /// Only `prepare`: remove temporary files and backups; nothing was renamed.
    Undo { batch: u32, changes: Vec<Change> },
}

/// How the run began: its `start` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub(crate) version: u32,
    pub(crate) run_id: String,
    pub(crate) command: String,
    pub(crate) as_of: String,
    pub(crate) operator: Option<String>,
    pub(crate) reason: Option<String>,
}

/// What the first pass over a journal learns (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct Left {
    /// The run's first `start` record.
    pub(crate) start: Option<Start>,
    /// The last change of `ca/` the run journaled (a `ca` record), if it made one.
    pub(crate) ca: Option<Record>,
    /// The batches neither committed nor aborted, in journal order: an undo of those not
    /// ready, then a finish of those ready (which a batch with a `ready` always has).
    pub(crate) unfinished: Vec<Unfinished>,
    /// The deploy hook calls journaled for each unfinished batch.
    hooks: BTreeMap<u32, Vec<HookCall>>,
    /// Why each identity an unfinished batch said had failed did (its `failed` records).
    failures: BTreeMap<String, String>,
    /// The batches closed by their `commit`.
    committed: BTreeSet<u32>,
    /// The batches closed by an `abort` that says why (the run's own, or a replay's).
    aborted: BTreeSet<u32>,
    /// Why the run stopped before its end, if its journal says it did.
    pub(crate) stopped: Option<String>,
    /// The hook calls whose end the journal records as failed or timed out (before a replay,
    /// only the run's own attempts: pending calls are retried after it).
    pub(crate) hooks_failed: usize,
    /// Whether the run journaled its `end`.
    pub(crate) ended: bool,
    /// Whether each identity the batches name follows the one before in (node, service) order,
    /// so that each is named once: true of every journal rekey writes.
    pub(crate) in_order: bool,
}

/// A batch not closed yet, as the first pass holds it.
struct Open {
    /// Where its first `prepare` is among the batches (replay goes in journal order).
    seq: usize,
    changes: Vec<Change>,
    /// The identities its first `ready` named, once it came.
    ready: Option<BTreeSet<String>>,
    hooks: Vec<HookCall>,
    failed: Vec<Failure>,
}

impl Left {
    /// The first pass over `records`, the records of the journal at `path` from its start. A
    /// batch's records come in the protocol's order (`prepare` first): a journal that says a
    /// batch was ready, committed or aborted before it was prepared is damaged, and is refused
    /// rather than guessed at.
    pub(crate) fn of(path: &Path, records: impl Iterator<Item = Result<Record>>) -> Result<Left> {
        let mut left = Left {
            in_order: true,
            ..Left::default()
        };
        let mut open: BTreeMap<u32, Open> = BTreeMap::new();
        let mut order = Order::default();
        let mut seq = 0;
        let mut prepared = BTreeSet::new();
        let mut untouched = BTreeSet::new();
        for (line, record) in (1..).zip(records) {
            let record = record?;
            if let Some((batch, what)) = step_of(&record)
                && !prepared.contains(&batch)
            {
                bail!(
                    "journal {} line {line}: batch {batch} is {what} before it is prepared, which \
                     rekey never writes: {DAMAGED}",
                    path.display()
                );
            }
            match record {
                Record::Start {
                    version,
                    run_id,
                    command,
                    as_of,
                    operator,
                    reason,
                } if left.start.is_none() => {
                    if version == 0 {
                        bail!(
                            "journal {} line {line}: journal version 0, which rekey never \
                             writes: {DAMAGED}",
                            path.display()
                        );
                    }
                    if version > VERSION {
                        bail!(
                            "journal {} line {line}: written by a later rekey (journal version \
                             {version}; this rekey reads up to {VERSION}): replay it with the \
                             rekey that wrote it, or a later one, before using this one",
                            path.display()
                        );
                    }
                    left.start = Some(Start {
                        version,
                        run_id,
                        command,
                        as_of,
                        operator,
                        reason,
                    });
                }
                Record::Prepare { batch, .. } if prepared.contains(&batch) => {
                    bail!(
                        "journal {} line {line}: batch {batch} is prepared twice, which rekey \
                         never writes: {DAMAGED}",
                        path.display()
                    );
                }
                Record::Unchanged { batch, .. }
                    if prepared.contains(&batch) || untouched.contains(&batch) =>
                {
                    bail!(
                        "journal {} line {line}: batch {batch} names identities left unchanged \
                         after it is prepared or twice, which rekey never writes: {DAMAGED}",
                        path.display()
                    );
                }
                Record::Unchanged { batch, identities } => {
                    untouched.insert(batch);
                    order.untouched(batch, identities.into_iter().map(|u| u.id).collect());
                }
                Record::Prepare { batch, identities } => {
                    order.prepared(batch, identities.iter().map(|c| c.id.clone()).collect());
                    seq += 1;
                    prepared.insert(batch);
                    let batch = open.entry(batch).or_insert_with(|| Open {
                        seq,
                        changes: Vec::new(),
                        ready: None,
                        hooks: Vec::new(),
                        failed: Vec::new(),
                    });
                    batch.changes.extend(identities);
                }
                Record::Ready { batch, identities } => {
                    if let Some(open) = open.get_mut(&batch)
                        && open.ready.is_none()
                    {
                        open.ready = Some(identities.into_iter().collect());
                    }
                }
                Record::Hooks {
                    batch: Some(batch),
                    calls,
                } => {
                    if let Some(open) = open.get_mut(&batch) {
                        open.hooks.extend(calls);
                    }
                }
                Record::Failed { batch, identities } => {
                    if let Some(open) = open.get_mut(&batch) {
                        open.failed.extend(identities);
                    }
                }
                Record::Commit { batch } if open.remove(&batch).is_some() => {
                    left.committed.insert(batch);
                }
                Record::Abort { batch, reason } => {
                    // Undone by the run, or by a replay of it: said why, so reported.
                    let closed = open.remove(&batch).is_some();
                    if closed && reason.is_some() {
                        left.aborted.insert(batch);
                    }
                }
                Record::Stopped { reason } => left.stopped = Some(reason),
                Record::HookDone { ok: false, .. } => left.hooks_failed += 1,
                Record::End { .. } => left.ended = true,
                ca @ Record::Ca { .. } => left.ca = Some(ca),
                _ => {}
            }
        }
        order.settle();
        left.in_order = !order.broken;
        let mut open: Vec<(u32, Open)> = open.into_iter().collect();
        open.sort_by_key(|(_, o)| o.seq);
        for (batch, o) in open {
            match o.ready {
                Some(ready) => {
                    let (finish, undo): (Vec<Change>, Vec<Change>) = o
                        .changes
                        .into_iter()
                        .partition(|c| ready.contains(&c.key()));
                    if !undo.is_empty() {
                        left.unfinished.push(Unfinished::Undo {
                            batch,
                            changes: undo,
                        });
                    }
                    left.unfinished.push(Unfinished::Finish {
                        batch,
                        changes: finish,
                    });
                }
                None => left.unfinished.push(Unfinished::Undo {
                    batch,
                    changes: o.changes,
                }),
            }
            left.hooks.insert(batch, o.hooks);
            for Failure { id, reason } in o.failed {
                left.failures.entry(id.to_string()).or_insert(reason);
            }
        }
        Ok(left)
    }

    /// Why the run said identity `id` of an unfinished batch failed, if it said.
    pub(crate) fn failure_of(&self, id: &IdentityId) -> Option<&str> {
        self.failures.get(&id.to_string()).map(String::as_str)
    }

    /// The deploy hook calls journaled for unfinished batch `batch`.
    pub(crate) fn hooks_of(&self, batch: u32) -> &[HookCall] {
        self.hooks.get(&batch).map_or(&[], Vec::as_slice)
    }

    /// Whether undoing `batch` closes it (nothing of it was ready): otherwise its finish does.
    pub(crate) fn undo_closes(&self, batch: u32) -> bool {
        !self
            .unfinished
            .iter()
            .any(|u| matches!(u, Unfinished::Finish { batch: b, .. } if *b == batch))
    }

    /// The second pass over `records` (the same journal from its start): each committed batch's
    /// identities, those it made wholly new and those it failed, each batch's identities left
    /// untouched, and those of each batch undone with a reason, batch by batch as the journal
    /// goes. Holds one batch at a time.
    pub(crate) fn parts<'a>(
        &'a self,
        records: impl Iterator<Item = Result<Record>> + 'a,
    ) -> impl Iterator<Item = Result<Part>> + 'a {
        let mut closing = Closing::default();
        records.filter_map(move |record| match record {
            Err(e) => Some(Err(e)),
            Ok(record) => closing
                .take((&self.committed, &self.aborted), record)
                .map(Ok),
        })
    }
}

/// The batches of a journal held in memory that were neither committed nor aborted (pure).
#[cfg(test)]
pub(crate) fn unfinished(records: &[Record]) -> Vec<Unfinished> {
    held(records).unfinished
}

/// The identities of the batches a journal held in memory committed (pure).
#[cfg(test)]
pub(crate) fn committed(records: &[Record]) -> Vec<Change> {
    let left = held(records);
    let parts = left.parts(records.iter().cloned().map(Ok));
    parts
        .flat_map(|part| match part.expect("records held in memory read") {
            Part::Committed(_, changes, _) => changes,
            Part::Unchanged(..) => Vec::new(),
        })
        .collect()
}

/// Whether a journal names its identities in (node, service) order, each once, batch by batch:
/// a batch's identities left unchanged (journaled before its `prepare`) and its prepared ones
/// each in order, none in both, and all after every identity of the batches before. Holds one
/// batch's unchanged names at most.
#[derive(Default)]
struct Order {
    /// The last identity of the batches before.
    last: Option<IdentityId>,
    /// A batch's identities left unchanged, until its `prepare` or another batch's record.
    untouched: Option<(u32, Vec<IdentityId>)>,
    broken: bool,
}

impl Order {
    fn untouched(&mut self, batch: u32, ids: Vec<IdentityId>) {
        self.settle();
        self.untouched = Some((batch, ids));
    }

    fn prepared(&mut self, batch: u32, ids: Vec<IdentityId>) {
        let untouched = match self.untouched.take() {
            Some((of, untouched)) if of == batch => untouched,
            other => {
                self.untouched = other;
                self.settle();
                Vec::new()
            }
        };
        self.batch(vec![untouched, ids]);
    }

    /// The identities left unchanged by a batch that staged nothing, as one batch.
    fn settle(&mut self) {
        if let Some((_, untouched)) = self.untouched.take() {
            self.batch(vec![untouched]);
        }
    }

    fn batch(&mut self, lists: Vec<Vec<IdentityId>>) {
        let increasing = |ids: &[IdentityId]| ids.windows(2).all(|w| key(&w[0]) < key(&w[1]));
        if !lists.iter().all(|ids| increasing(ids)) {
            self.broken = true;
        }
        let mut all: Vec<IdentityId> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| key(a).cmp(&key(b)));
        if !increasing(&all)
            || all
                .first()
                .zip(self.last.as_ref())
                .is_some_and(|(first, last)| key(first) <= key(last))
        {
            self.broken = true;
        }
        if let Some(last) = all.pop() {
            self.last = Some(last);
        }
    }
}

/// The batch a record after its `prepare` names, and what the record says of it.
fn step_of(record: &Record) -> Option<(u32, &'static str)> {
    match record {
        Record::Ready { batch, .. } => Some((*batch, "ready")),
        Record::Hooks {
            batch: Some(batch), ..
        } => Some((*batch, "given hooks")),
        Record::Commit { batch } => Some((*batch, "committed")),
        Record::Abort { batch, .. } => Some((*batch, "aborted")),
        Record::Failed { batch, .. } => Some((*batch, "said to have failed")),
        _ => None,
    }
}

/// How reports order identities.
fn key(id: &IdentityId) -> (&str, &str) {
    (id.node(), id.service())
}

#[cfg(test)]
fn held(records: &[Record]) -> Left {
    Left::of(Path::new("journal"), records.iter().cloned().map(Ok))
        .expect("a journal in protocol order")
}

#[cfg(test)]
mod tests;
