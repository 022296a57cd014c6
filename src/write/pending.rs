//! Hooks earlier runs left pending: listing them (reads only), retrying them (each re-resolved
//! from the configuration as it is now; one whose source or identity is gone is dropped, with an
//! audit line, and never pending again), and discarding them by hand (journaled and audited).
//! A run that journaled hooks carries a `hooks.pending` marker (0600) until none of its calls
//! is: it goes when the run ends with every hook run, or when a later writer has run the rest.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};

use super::hooks::{self, HookCall, HookResult, HookSet, HookStatus, Unresolved};
use super::journal::{self, Record};
use super::record::audit::{self, HookLine};
use super::record::history;
use super::record::pending_calls::{self, Pending};
use super::record::run_report::{RetriedHook, RetriedHooks};
use crate::exit::UsageError;
use crate::store::{RunDir, Store};

/// Marks a run as having hooks that may be pending, so that later runs look at its journal.
pub(crate) fn mark(run: &RunDir) -> Result<()> {
    let marker = run.hooks_pending();
    hooks::private_file(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false),
        &marker,
    )?;
    // The marker's name durable before the hooks it points to are journaled.
    crate::fsio::sync_dir(run.path())
}

/// The journal as hooks end: each call's end appended at once. After the filesystem filled up,
/// nothing more is attempted (the calls stay pending), and that is said once.
pub(crate) struct HookJournal<'a> {
    journal: &'a mut journal::Journal,
    /// The journal refused a record: the filesystem is full.
    refused: bool,
}

impl<'a> HookJournal<'a> {
    pub(crate) fn new(journal: &'a mut journal::Journal) -> HookJournal<'a> {
        HookJournal {
            journal,
            refused: false,
        }
    }

    /// Journals that `call` ended with `result`.
    pub(crate) fn done(&mut self, call: u32, result: &HookResult) -> anyhow::Result<()> {
        if self.refused {
            return Ok(());
        }
        let record = journal::Record::hook_done(call, result.status);
        match self.journal.append(&record) {
            Ok(()) => {
                journal::crash_point("hook_done");
                Ok(())
            }
            Err(err) if crate::fsio::caused_by_no_space(&err) => {
                eprintln!(
                    "rekey: warning: {}; hook call {call} and those that end after it stay \
                     pending and run again next time",
                    crate::values::Escaped::new(&format!("{err:#}"))
                );
                self.refused = true;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }
}

/// One pending hook call, as `rekey hooks list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingHook {
    pub(crate) run_id: String,
    pub(crate) call: HookCall,
    /// How its last attempt ended; `None`: it never ran (cut short by a crash).
    pub(crate) last: Option<HookStatus>,
}

impl PendingHook {
    /// Why it is pending: `failed`, `timed out` or `never ran`.
    pub(crate) fn why(&self) -> &'static str {
        match self.last {
            None => "never ran",
            Some(HookStatus::TimedOut) => "timed out",
            Some(_) => "failed",
        }
    }
}

/// The runs that may have pending hooks, oldest first.
fn marked_runs(root: &Path) -> Result<Vec<RunDir>> {
    let mut runs = Store::of(root).runs()?;
    runs.retain(|run| run.hooks_pending().exists());
    Ok(runs)
}

/// Hands `take` each pending call of `run`, its journal read a window at a time (see
/// `record::pending_calls`); `take` may stop early.
fn each_pending(run: &RunDir, take: impl FnMut(Pending) -> Result<ControlFlow<()>>) -> Result<()> {
    let path = run.journal();
    pending_calls::each(|| journal::records(&path), take)
}

/// Hands `take` every pending hook call of the fleet at `root`, oldest run first, each run's
/// journal read a window at a time: nothing is held. Reads only: no lock, no hook runs.
pub(crate) fn each(root: &Path, mut take: impl FnMut(PendingHook) -> Result<()>) -> Result<()> {
    for run in marked_runs(root)? {
        each_pending(&run, |p| {
            take(PendingHook {
                run_id: run.id().to_string(),
                call: p.call,
                last: p.last,
            })?;
            Ok(ControlFlow::Continue(()))
        })?;
    }
    Ok(())
}

/// Every pending hook call of the fleet at `root`, oldest run first ([`each`], held).
pub(crate) fn list(root: &Path) -> Result<Vec<PendingHook>> {
    let mut out = Vec::new();
    each(root, |p| {
        out.push(p);
        Ok(())
    })?;
    Ok(out)
}

/// The metrics' `rekey_hooks_pending` and `rekey_hooks_failed_total` of the fleet at `root`;
/// `None` when this user may not read the run store. Counted, never listed.
pub(crate) fn counts(root: &Path) -> Option<crate::metrics::HookCounts> {
    let mut pending = 0;
    for run in marked_runs(root).ok()? {
        each_pending(&run, |_| {
            pending += 1;
            Ok(ControlFlow::Continue(()))
        })
        .ok()?;
    }
    Some(crate::metrics::HookCounts {
        pending,
        failed_total: super::record::history::hooks_failed_total(&Store::of(root)).ok()?,
    })
}

/// What retrying the pending hooks did.
#[derive(Debug, Default)]
pub(crate) struct Retried {
    /// The calls that ran, and how each ended.
    pub(crate) ran: RetriedHooks,
    /// Calls left pending untried: command-line hooks not given again, and post calls held
    /// while a deploy call of their run stays pending.
    pub(crate) not_given: usize,
    /// Calls dropped: their source or identity is gone.
    pub(crate) dropped: usize,
}

/// Runs the pending hooks of every earlier run, oldest run first, each resolved in `set` (the
/// configuration as it is now), a run's deploy calls before its post calls. A call whose source
/// or identity is gone is dropped: journaled, audited, said on stderr. A command-line hook `set`
/// does not hold stays pending, and so does a post call while a deploy call of its run does.
/// Journals each attempt; removes a run's marker once nothing of it is pending. Under the writer
/// lock.
pub(crate) fn retry(
    root: &Path,
    fleet: &crate::fsio::RootDir,
    set: &HookSet,
    now: DateTime<Utc>,
) -> Result<Retried> {
    let mut out = Retried::default();
    for run in marked_runs(root)? {
        let id = run.id();
        let mut journal = journal::Journal::open(&run.journal())?;
        let counts = super::record::done::counts(&run)
            .or_else(|| history::read_report(&run).ok().map(|r| r.counts))
            .unwrap_or_default();
        let ctx = hooks::Context {
            root,
            fleet,
            run_id: id,
            run: &run,
            post_env: hooks::post_env(&run.report(), &counts),
        };
        let mut journal = HookJournal::new(&mut journal);
        // Deploy calls come first: a post call announces the run's work done, so it waits
        // while any deploy call of its run stays pending (failed again, or not given again).
        // Each call's end is appended to the journal as the calls are read from it: the
        // reading never looks at what is appended.
        let mut deploy_left = false;
        each_pending(&run, |Pending { call, .. }| {
            let at = call.dir().map(|d| format!(" for {d}")).unwrap_or_default();
            if deploy_left && call.dir().is_none() {
                eprintln!(
                    "rekey: the pending hook {} (call {}) of run {id} stays pending: a deploy \
                     hook of its run is still pending",
                    call.source, call.call
                );
                out.not_given += 1;
                return Ok(ControlFlow::Continue(()));
            }
            match set.resolve(&call) {
                Err(Unresolved::Gone(why)) => {
                    journal.journal.append(&Record::HookDropped {
                        call: call.call,
                        reason: why.clone(),
                    })?;
                    let line = HookLine {
                        run_id: id,
                        call: &call,
                    };
                    audit::hook_dropped(root, &line, &why, now)?;
                    eprintln!(
                        "rekey: dropped the pending hook {} (call {}) of run {id}{at}: {why}",
                        call.source, call.call
                    );
                    out.dropped += 1;
                }
                Err(Unresolved::NotGiven(why)) => {
                    eprintln!(
                        "rekey: the pending hook {} (call {}) of run {id}{at} stays pending: {why}",
                        call.source, call.call
                    );
                    out.not_given += 1;
                    deploy_left |= call.dir().is_some();
                }
                Ok(_) => {
                    let result = hooks::run(&call, set, &ctx, None);
                    journal.done(call.call, &result)?;
                    let ok = result.status == HookStatus::Ok;
                    deploy_left |= !ok && call.dir().is_some();
                    eprintln!(
                        "rekey: ran the pending hook {} of run {id}{at}: {}",
                        call.source,
                        if ok {
                            "ok"
                        } else {
                            "failed again, still pending"
                        }
                    );
                    out.ran.push(RetriedHook {
                        run_id: id.to_string(),
                        dir: call.dir(),
                        result,
                    });
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        settle(&run)?;
    }
    super::reap::sweep();
    out.ran.close();
    Ok(out)
}

/// Removes a run's marker once none of its calls is pending (a run whose hooks all ran).
pub(crate) fn settle(run: &RunDir) -> Result<()> {
    if !run.hooks_pending().exists() {
        return Ok(());
    }
    let mut none = true;
    each_pending(run, |_| {
        none = false;
        Ok(ControlFlow::Break(()))
    })?;
    if none {
        unmark(run)?;
    }
    Ok(())
}

fn unmark(run: &RunDir) -> Result<()> {
    let marker = run.hooks_pending();
    std::fs::remove_file(&marker).with_context(|| format!("failed to remove {}", marker.display()))
}

/// Which pending calls `rekey hooks discard` drops: `RUN_ID` (all of that run's) or
/// `RUN_ID:CALL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub(crate) run_id: String,
    pub(crate) call: Option<u32>,
}

impl std::str::FromStr for Target {
    type Err = UsageError;

    fn from_str(text: &str) -> Result<Target, UsageError> {
        let (run_id, call) = match text.rsplit_once(':') {
            Some((run, call)) => {
                let call = call.parse::<u32>().map_err(|_| {
                    UsageError(format!(
                        "{text:?}: CALL must be a call number (RUN_ID:CALL, as `rekey hooks list` \
                         shows)"
                    ))
                })?;
                (run, Some(call))
            }
            None => (text, None),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-');
        if run_id.is_empty() || !run_id.chars().all(plain) {
            return Err(UsageError(format!(
                "{text:?} names no run (RUN_ID or RUN_ID:CALL)"
            )));
        }
        Ok(Target {
            run_id: run_id.to_string(),
            call,
        })
    }
}

/// Drops the pending calls `target` names, each journaled and audited as discarded by
/// `operator`. Runs nothing. Under the writer lock. An unknown run or call is an error.
pub(crate) fn discard(
    root: &Path,
    target: &Target,
    operator: &str,
    now: DateTime<Utc>,
) -> Result<Vec<PendingHook>> {
    let store = Store::of(root);
    let run = store.run(&target.run_id);
    let path = run.journal();
    if !path.is_file() {
        bail!(
            "no run {} in {} (see `rekey hooks list`)",
            target.run_id,
            store.runs_dir().display()
        );
    }
    // Those discarded are printed: held. The journal is read a window at a time.
    let (mut chosen, mut pending) = (Vec::new(), 0usize);
    each_pending(&run, |p| {
        pending += 1;
        if target.call.is_none_or(|n| p.call.call == n) {
            chosen.push(p);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if let Some(n) = target.call
        && chosen.is_empty()
    {
        let mut known = false;
        for record in journal::records(&path)? {
            if let Record::Hooks { calls, .. } = record? {
                known |= calls.iter().any(|c| c.call == n);
            }
        }
        if known {
            bail!(
                "no pending hook call {n} in run {}: it ran, or was dropped or discarded",
                target.run_id
            );
        }
        bail!("no hook call {n} in run {}", target.run_id);
    }
    let mut journal = journal::Journal::open(&path)?;
    let mut out = Vec::new();
    for p in chosen {
        journal.append(&Record::HookDiscarded {
            call: p.call.call,
            operator: operator.to_string(),
        })?;
        let line = HookLine {
            run_id: &target.run_id,
            call: &p.call,
        };
        audit::hook_discarded(root, &line, operator, now)?;
        out.push(PendingHook {
            run_id: target.run_id.clone(),
            call: p.call,
            last: p.last,
        });
    }
    if out.len() == pending && run.hooks_pending().exists() {
        unmark(&run)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_targets_a_run_or_one_call() {
        let ok = |run: &str, call| {
            Ok(Target {
                run_id: run.to_string(),
                call,
            })
        };
        let cases: [(&str, &str, Result<Target, ()>); 6] = [
            (
                "a run",
                "20261128T000000.000000Z",
                ok("20261128T000000.000000Z", None),
            ),
            (
                "a call",
                "20261128T000000.000000Z:3",
                ok("20261128T000000.000000Z", Some(3)),
            ),
            (
                "a renamed run",
                "20261128T000000.000000Z-2:1",
                ok("20261128T000000.000000Z-2", Some(1)),
            ),
            ("no call number", "20261128T000000.000000Z:x", Err(())),
            ("a path", "../x:1", Err(())),
            ("nothing", "", Err(())),
        ];
        for (name, text, want) in cases {
            assert_eq!(text.parse::<Target>().map_err(drop), want, "{name}");
        }
    }
}
