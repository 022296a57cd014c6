//! The batch loop every writing run goes through: stage a batch of identities in parallel (while
//! the previous one commits), commit it through the journal, and collect one report line per
//! identity. It stops cleanly, between batches, when the filesystem fills up or a signal asks.

use std::borrow::Borrow;

use rayon::prelude::*;

use super::hooks::{self, HookCall, HookResult, HookSet};
use super::journal::{self, Committed, Staged};
use super::progress::Meter;
use super::record::entries::{LeftAs, Untouched};
use super::record::run::Run;
use super::record::run_report::{IdentityReport, Lines, Outcome};
use super::signals::Interrupt;
use super::work::{NotStaged, Work};
use crate::fsio::FileId;
use crate::names::IdentityId;

/// Identities per journal batch: one sync pair and four journal records per batch (one more
/// when it left some identities untouched, and one more for each step at which some failed). A
/// run holds two batches' new files at once (one committing, the next staged), so this sets its
/// memory: 512 keeps a fleet of a few thousand identities as large in memory as any larger one,
/// at two syncs per 512 identities (which the disk's time per identity hides).
pub(crate) const BATCH: usize = 512;

/// The identities of one batch: [`BATCH`]; a build with the test kit (never a release) takes
/// `REKEY_TEST_BATCH=<n>` instead, so that a test runs many batches on a small fleet.
fn batch_size() -> usize {
    #[cfg(feature = "testkit")]
    if let Some(n) = std::env::var("REKEY_TEST_BATCH")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    BATCH
}

/// Why a run stopped before its end; the identities it did not reach are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The filesystem filled up (the message names the file); the batch was undone.
    NoSpace(String),
    /// A signal asked the run to stop; the batch in flight was committed first.
    Interrupted(&'static str),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::NoSpace(why) => f.write_str(why),
            Stop::Interrupted(signal) => write!(f, "interrupted by {signal}"),
        }
    }
}

/// What the loop did (its report lines went to the run's [`Lines`], batch by batch).
#[derive(Debug)]
pub(crate) struct Batches {
    pub(crate) stopped: Option<Stop>,
    /// The last hook call number used.
    pub(crate) last_call: u32,
}

/// The deploy hooks of a run's batches: which to call, where, and the last call number used.
pub(crate) struct Hooking<'a> {
    pub(crate) set: &'a HookSet,
    pub(crate) ctx: hooks::Context<'a>,
    pub(crate) next: u32,
}

/// What a run's batches take: each identity and its item, in (node, service) order, from a map
/// held or a survey streamed, and how many there are (for the progress shown).
pub(crate) struct Items<I> {
    pub(crate) each: I,
    pub(crate) total: usize,
}

/// Where a run's batches go: through the journal onto disk, or nowhere (a dry run: each
/// identity staged is reported as its commit would report it, and nothing is written).
pub(crate) enum Commit<'a> {
    Journal(&'a mut Run),
    Nowhere,
}

impl Commit<'_> {
    /// Commits one staged batch (see `journal::commit_batch`), or, for a dry run, says what
    /// its commit would: every identity staged done, in the directory it was staged in.
    fn batch(
        &mut self,
        batch: u32,
        fleet: &crate::fsio::RootDir,
        (staged, untouched): (Vec<Staged>, Vec<Untouched>),
        calls: &[HookCall],
    ) -> anyhow::Result<Vec<Committed>> {
        let Commit::Journal(run) = self else {
            let done = |s: Staged| {
                let id = s.dir.file_id();
                Committed::Done(s.change(), s.details, id)
            };
            return Ok(staged.into_iter().map(done).collect());
        };
        if !calls.is_empty() {
            super::pending::mark(&run.dir)?;
        }
        let backup = run.dir.backup();
        let temps = journal::Temps::of(run.id());
        let places = (backup.as_path(), &temps);
        let batch = journal::Batch {
            number: batch,
            staged,
            untouched,
        };
        journal::commit_batch(&mut run.journal, batch, fleet, places, calls)
    }

    /// Journals why the run stops here, for a replay's report (best effort on a full
    /// filesystem, which may be why); a dry run journals nothing.
    fn stop(&mut self, stop: &Stop) -> anyhow::Result<()> {
        let Commit::Journal(run) = self else {
            return Ok(());
        };
        let reason = stop.to_string();
        match run.journal.append(&journal::Record::Stopped { reason }) {
            Err(e) if !crate::fsio::caused_by_no_space(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// What the batch loop works with besides its items, the same for every batch: the threads
/// that stage and commit, the fleet's root, the progress meter and the signals that stop it.
pub(crate) struct Crew<'a> {
    pub(crate) pool: &'a rayon::ThreadPool,
    pub(crate) fleet: &'a crate::fsio::RootDir,
    pub(crate) meter: &'a Meter,
    pub(crate) interrupt: &'a Interrupt,
}

/// Runs `work` over `items` through the journal, batch by batch, and each committed identity's
/// deploy hooks after its batch; each batch's report lines go to `lines` once it is done, and
/// the batch is dropped. Keyed by identity, so no identity is staged twice. Any error
/// other than a full filesystem means the run could not go on at all (journal or filesystem
/// sync failed), and the next writer replays the journal.
pub(crate) fn run<W: Work, T: Borrow<W::Item> + Send + Sync>(
    work: &W,
    mut items: impl Iterator<Item = (IdentityId, T)>,
    crew: Crew<'_>,
    mut commit: Commit<'_>,
    mut hooking: Option<Hooking<'_>>,
    lines: &mut Lines,
) -> anyhow::Result<Batches> {
    let Crew {
        pool,
        fleet,
        meter,
        interrupt,
    } = crew;
    let size = batch_size();
    let mut chunk: Vec<(IdentityId, T)> = items.by_ref().take(size).collect();
    // Staging (crypto) of batch n+1 runs while batch n is committed (mostly waiting on the
    // disk), so neither waits for the other. Items are taken a batch ahead: from a survey
    // streamed, that is as far as it is read.
    let mut prepared = pool.install(|| stage_chunk(work, &chunk, meter));
    let mut stopped = None;
    let mut batch: u32 = 0;
    while !chunk.is_empty() {
        let next: Vec<(IdentityId, T)> = items.by_ref().take(size).collect();
        let mut reports = Vec::with_capacity(chunk.len());
        if stopped.is_none()
            && let Some(signal) = interrupt.received()
        {
            let stop = Stop::Interrupted(signal);
            commit.stop(&stop)?;
            stopped = Some(stop);
        }
        if let Some(stop) = &stopped {
            let why = match stop {
                Stop::NoSpace(_) => "not attempted: the filesystem filled up before it".into(),
                Stop::Interrupted(sig) => format!("not attempted: the run was stopped by {sig}"),
            };
            let untouched: Vec<Untouched> = chunk
                .iter()
                .map(|(id, _)| Untouched {
                    id: id.clone(),
                    left: LeftAs::Failed,
                    reason: why.clone(),
                })
                .collect();
            reports.extend(untouched.iter().map(IdentityReport::untouched));
            // Journaled as a batch that staged nothing, for a replay's report.
            commit.batch(batch, fleet, (Vec::new(), untouched), &[])?;
            lines.batch(reports);
            (chunk, batch) = (next, batch + 1);
            continue;
        }
        let mut staged = Vec::new();
        let mut untouched = Vec::new();
        for (id, result) in std::mem::take(&mut prepared) {
            let (left, reason) = match result {
                Ok(s) => {
                    staged.push(s);
                    continue;
                }
                Err(NotStaged::Skipped(why)) => (LeftAs::Skipped, why),
                Err(NotStaged::Failed(why)) => (LeftAs::Failed, why),
            };
            reports.push(line(&id, left.into(), reason.clone()));
            untouched.push(Untouched { id, left, reason });
        }
        let names: Vec<IdentityId> = staged.iter().map(|s| s.id.clone()).collect();
        let calls: Vec<HookCall> = match hooking.as_mut() {
            Some(h) => staged
                .iter()
                .flat_map(|s| {
                    let not_after = s.details.cert.as_ref().map(|c| c.new_not_after.clone());
                    let not_after =
                        not_after.or(s.details.token.as_ref().map(|t| t.new_exp.clone()));
                    h.set.deploy_calls(&s.id, not_after, &mut h.next)
                })
                .collect(),
            None => Vec::new(),
        };
        let (committed, staged_next) = pool.install(|| {
            rayon::join(
                || commit.batch(batch, fleet, (staged, untouched), &calls),
                || stage_chunk(work, &next, meter),
            )
        });
        prepared = staged_next;
        let committed = match committed {
            Ok(committed) => committed,
            Err(err) => match err.downcast::<journal::NoSpace>() {
                Ok(journal::NoSpace(why, failed)) => {
                    // Each identity it staged, filled up, but those whose own failure came
                    // first (and was journaled).
                    reports.extend(names.iter().map(|id| {
                        let own = failed.iter().find(|f| f.id == *id);
                        let reason = own.map_or(journal::FILLED, |f| f.reason.as_str());
                        IdentityReport::unchanged(id, Outcome::Failed, reason.to_string())
                    }));
                    lines.batch(reports);
                    let stop = Stop::NoSpace(why);
                    commit.stop(&stop)?;
                    stopped = Some(stop);
                    prepared = Vec::new();
                    (chunk, batch) = (next, batch + 1);
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        let mut done: Vec<(IdentityId, Option<FileId>, IdentityReport)> = committed
            .into_iter()
            .map(|committed| match committed {
                Committed::Done(change, details, dir) => {
                    let line = IdentityReport::done(&change.id, change.files, details);
                    (change.id, Some(dir), line)
                }
                Committed::Failed { id, reason } => {
                    let line = IdentityReport::unchanged(&id, Outcome::Failed, reason);
                    (id, None, line)
                }
            })
            .collect();
        if let Some(h) = &hooking {
            pool.install(|| run_deploy_hooks(h, &calls, &mut done, &mut commit))?;
        }
        reports.extend(done.into_iter().map(|(_, _, line)| line));
        lines.batch(reports);
        (chunk, batch) = (next, batch + 1);
    }
    Ok(Batches {
        stopped,
        last_call: hooking.map_or(0, |h| h.next),
    })
}

/// Runs the deploy hooks of the identities done (in parallel, bounded by the run's threads), each
/// in the directory its files were written in; journals each call's end as it ends (so that a
/// crash re-runs only the calls still running then), and puts each identity's results on its
/// report line. A journal the full filesystem refuses the record of a call leaves that call
/// pending (it runs again next time) without stopping the run: its files are in place.
fn run_deploy_hooks(
    h: &Hooking<'_>,
    calls: &[HookCall],
    lines: &mut [(IdentityId, Option<FileId>, IdentityReport)],
    commit: &mut Commit<'_>,
) -> anyhow::Result<()> {
    // A dry run runs no hook (and is given none to run).
    let Commit::Journal(run) = commit else {
        return Ok(());
    };
    let journal = std::sync::Mutex::new(super::pending::HookJournal::new(&mut run.journal));
    let ran: Vec<(usize, anyhow::Result<Vec<HookResult>>)> = lines
        .par_iter()
        .enumerate()
        .filter(|(_, (_, _, line))| line.outcome == Outcome::Done)
        .map(|(n, (id, dir, _))| {
            let own = calls.iter().filter(|c| c.id.as_ref() == Some(id));
            let results = own
                .map(|c| {
                    let result = hooks::run(c, h.set, &h.ctx, *dir);
                    // A poisoned lock means another hook's thread panicked: the run is over.
                    let mut journal = journal
                        .lock()
                        .map_err(|_| anyhow::anyhow!("a hook's thread panicked"))?;
                    journal.done(c.call, &result)?;
                    Ok(result)
                })
                .collect();
            (n, results)
        })
        .collect();
    super::reap::sweep();
    for (n, results) in ran {
        lines[n].2.hooks.extend(results?);
    }
    Ok(())
}

type StagedChunk = Vec<(IdentityId, Result<Staged, NotStaged>)>;

fn stage_chunk<W: Work, T: Borrow<W::Item> + Sync>(
    work: &W,
    chunk: &[(IdentityId, T)],
    meter: &Meter,
) -> StagedChunk {
    chunk
        .par_iter()
        .map(|(id, item)| {
            let staged = work.stage(id, item.borrow());
            meter.tick();
            (id.clone(), staged)
        })
        .collect()
}

fn line(id: &IdentityId, outcome: Outcome, reason: String) -> IdentityReport {
    IdentityReport::unchanged(id, outcome, reason)
}
