//! The hook calls a journal leaves to run, read a window at a time: a first pass over the
//! journal notes which batches committed and how each call last ended (a byte per call), a
//! second hands over each batch's deploy calls once its `ready` says which identities it
//! placed, then the post calls. Nothing of a run is held whole, whatever the fleet's size.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use anyhow::Result;

use super::calls::{HookCall, HookKind, HookStatus};
use super::entries::{CaStep, Record};

/// A hook call still to run, and how its last attempt ended (`None`: it never ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) call: HookCall,
    pub(crate) last: Option<HookStatus>,
}

/// The hook calls of a journal still to run (pure): see [`each`].
#[cfg(test)]
pub(crate) fn pending_hooks(records: &[Record]) -> Vec<Pending> {
    let mut out = Vec::new();
    let again = || Ok(records.iter().cloned().map(Ok));
    let collected = each(again, |p| {
        out.push(p);
        Ok(ControlFlow::Continue(()))
    });
    // Records held in memory cannot fail to read.
    debug_assert!(collected.is_ok());
    out
}

/// Hands `take` each hook call of a journal still to run: a deploy call whose identity its own
/// batch placed (the batch committed, the identity was ready), or a post call of a run that
/// placed something or changed `ca/`, that has neither run successfully nor been dropped or
/// discarded. Deploy calls first, then post calls, each in the order journaled; `take` may stop
/// early. `records` gives the journal's records from its start, each time it is called (twice).
pub(crate) fn each<I>(
    records: impl Fn() -> Result<I>,
    mut take: impl FnMut(Pending) -> Result<ControlFlow<()>>,
) -> Result<()>
where
    I: Iterator<Item = Result<Record>>,
{
    let seen = Seen::of(records()?)?;
    if !seen.any_call {
        return Ok(());
    }
    let post_pending = seen.changed_ca || seen.placed_any();
    let mut posts = Vec::new();
    let mut window = Window::default();
    for record in records()? {
        let flow = match record? {
            Record::Prepare { batch, identities } => {
                let ids = identities.iter().map(|c| c.key()).collect();
                window = Window::new(batch, ids);
                ControlFlow::Continue(())
            }
            Record::Hooks { batch, calls } => {
                let (post, deploy): (Vec<HookCall>, Vec<HookCall>) =
                    calls.into_iter().partition(|c| c.kind == HookKind::Post);
                posts.extend(post.into_iter().filter(|_| post_pending));
                // A deploy call not journaled in its batch before its `ready` placed nothing.
                if batch.is_some_and(|b| b == window.batch && window.open()) {
                    window.calls.extend(deploy);
                }
                ControlFlow::Continue(())
            }
            Record::Ready { batch, identities } if batch == window.batch && window.open() => {
                let placed = seen.committed.contains(&batch);
                window.ready(identities.into_iter().filter(|_| placed));
                window.hand(&seen, &mut take)?
            }
            _ => ControlFlow::Continue(()),
        };
        if flow.is_break() {
            return Ok(());
        }
    }
    for call in posts {
        if let Some(p) = seen.states.pending(call)
            && take(p)?.is_break()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// What the first pass learns: batches committed, a stage's change of `ca/`, batches that
/// placed some identity, and how each call last ended.
#[derive(Default)]
struct Seen {
    committed: BTreeSet<u32>,
    placed: BTreeSet<u32>,
    changed_ca: bool,
    any_call: bool,
    states: States,
}

impl Seen {
    fn of(records: impl Iterator<Item = Result<Record>>) -> Result<Seen> {
        let mut seen = Seen::default();
        let mut window = Window::default();
        for record in records {
            match record? {
                Record::Prepare { batch, identities } => {
                    window = Window::new(batch, identities.iter().map(|c| c.key()).collect());
                }
                Record::Ready { batch, identities } if batch == window.batch && window.open() => {
                    window.ready(identities.into_iter());
                    if !window.placed.is_empty() {
                        seen.placed.insert(batch);
                    }
                }
                Record::Commit { batch } => {
                    seen.committed.insert(batch);
                }
                Record::Ca {
                    step: CaStep::Commit,
                    ..
                } => seen.changed_ca = true,
                Record::Hooks { calls, .. } => seen.any_call |= !calls.is_empty(),
                Record::HookDone { call, ok: true, .. }
                | Record::HookDropped { call, .. }
                | Record::HookDiscarded { call, .. } => seen.states.set(call, CLOSED),
                Record::HookDone { call, status, .. } => {
                    let last = match status.unwrap_or(HookStatus::Failed) {
                        HookStatus::TimedOut => TIMED_OUT,
                        _ => FAILED,
                    };
                    seen.states.set(call, last);
                }
                _ => {}
            }
        }
        Ok(seen)
    }

    /// Whether some committed batch placed an identity.
    fn placed_any(&self) -> bool {
        self.placed.intersection(&self.committed).next().is_some()
    }
}

/// One batch of the journal: the identities its `prepare` names, those its `ready` placed
/// (`None` before its `ready`), and its deploy calls waiting for that `ready`.
#[derive(Default)]
struct Window {
    batch: u32,
    prepared: BTreeSet<String>,
    placed: BTreeSet<String>,
    readied: bool,
    calls: Vec<HookCall>,
}

impl Window {
    fn new(batch: u32, prepared: BTreeSet<String>) -> Window {
        Window {
            batch,
            prepared,
            ..Window::default()
        }
    }

    /// Before the batch's `ready` (the first one counts).
    fn open(&self) -> bool {
        !self.readied && !self.prepared.is_empty()
    }

    fn ready(&mut self, identities: impl Iterator<Item = String>) {
        self.readied = true;
        self.placed = identities.filter(|k| self.prepared.contains(k)).collect();
    }

    /// Hands over the batch's deploy calls whose identity it placed and that are still open.
    fn hand(
        &mut self,
        seen: &Seen,
        take: &mut impl FnMut(Pending) -> Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        for call in std::mem::take(&mut self.calls) {
            let placed = call
                .id
                .as_ref()
                .is_some_and(|id| self.placed.contains(&id.to_string()));
            if let Some(p) = seen.states.pending(call).filter(|_| placed)
                && take(p)?.is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

const NEVER_RAN: u8 = 0;
const FAILED: u8 = 1;
const TIMED_OUT: u8 = 2;
const CLOSED: u8 = 3;

/// How each call last ended, a byte per call: calls are numbered from 1 as a run journals them,
/// so their bytes are held in one vector; a number far beyond those seen (a journal rekey did
/// not write) is kept aside.
#[derive(Default)]
struct States {
    dense: Vec<u8>,
    aside: BTreeMap<u32, u8>,
}

/// How far beyond the calls seen a call's number may lie and still be held in the vector.
const AHEAD: usize = 1 << 16;

impl States {
    fn set(&mut self, call: u32, state: u8) {
        let n = call as usize;
        let slot = if let Some(slot) = self.aside.get_mut(&call) {
            slot
        } else if n < self.dense.len() + AHEAD {
            if n >= self.dense.len() {
                self.dense.resize(n + 1, NEVER_RAN);
            }
            &mut self.dense[n]
        } else {
            self.aside.entry(call).or_insert(NEVER_RAN)
        };
        // Once closed, a call stays closed; otherwise its last attempt counts.
        if *slot != CLOSED {
            *slot = state;
        }
    }

    fn get(&self, call: u32) -> u8 {
        let held = self
            .aside
            .get(&call)
            .or_else(|| self.dense.get(call as usize));
        held.copied().unwrap_or(NEVER_RAN)
    }

    /// `call` as pending, unless it is closed.
    fn pending(&self, call: HookCall) -> Option<Pending> {
        let last = match self.get(call.call) {
            CLOSED => return None,
            FAILED => Some(HookStatus::Failed),
            TIMED_OUT => Some(HookStatus::TimedOut),
            _ => None,
        };
        Some(Pending { call, last })
    }
}

#[cfg(test)]
mod tests;
