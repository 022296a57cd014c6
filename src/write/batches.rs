//! The batch loop every writing run goes through: stage a batch of identities in parallel (while
//! the previous one commits), commit it through the journal, and collect one report line per
//! identity. It stops cleanly, between batches, when the filesystem fills up or a signal asks.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::hooks::{self, HookCall, HookResult, HookSet};
use super::journal::{self, Committed, Staged};
use super::progress::{Meter, Progress};
use super::record::run::Run;
use super::record::run_report::{IdentityReport, Outcome};
use super::signals::Interrupt;
use super::work::{NotStaged, Work};
use crate::fsio::FileId;
use crate::names::IdentityId;

/// Identities per journal batch: one sync pair and four journal records per batch.
pub(crate) const BATCH: usize = 1024;

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

/// What the loop did.
#[derive(Debug)]
pub(crate) struct Batches {
    /// One line per identity, in (node, service) order.
    pub(crate) identities: Vec<IdentityReport>,
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
        staged: Vec<Staged>,
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
        journal::commit_batch(&mut run.journal, batch, fleet, places, staged, calls)
    }
}

/// Runs `work` over `items` through the journal, batch by batch, and each committed identity's
/// deploy hooks after its batch. Keyed by identity, so no identity is staged twice. Any error
/// other than a full filesystem means the run could not go on at all (journal or filesystem
/// sync failed), and the next writer replays the journal.
pub(crate) fn run<W: Work>(
    work: &W,
    items: &BTreeMap<IdentityId, W::Item>,
    mut commit: Commit<'_>,
    fleet: &crate::fsio::RootDir,
    progress: Progress,
    interrupt: &Interrupt,
    mut hooking: Option<Hooking<'_>>,
) -> anyhow::Result<Batches> {
    let meter = Meter::new(progress, items.len());
    let all: Vec<(&IdentityId, &W::Item)> = items.iter().collect();
    let chunks: Vec<&[(&IdentityId, &W::Item)]> = all.chunks(BATCH).collect();
    let mut reports = Vec::with_capacity(items.len());
    // Staging (crypto) of batch n+1 runs while batch n is committed (mostly waiting on the
    // disk), so neither waits for the other.
    let mut prepared = chunks
        .first()
        .map(|c| stage_chunk(work, c, &meter))
        .unwrap_or_default();
    let mut stopped = None;
    for (batch, chunk) in chunks.iter().enumerate() {
        if stopped.is_none() {
            stopped = interrupt.received().map(Stop::Interrupted);
        }
        if let Some(stop) = &stopped {
            let why = match stop {
                Stop::NoSpace(_) => "not attempted: the filesystem filled up before it".into(),
                Stop::Interrupted(sig) => format!("not attempted: the run was stopped by {sig}"),
            };
            for (id, _) in *chunk {
                reports.push(line(id, Outcome::Failed, why.clone()));
            }
            continue;
        }
        let mut staged = Vec::new();
        for (id, result) in std::mem::take(&mut prepared) {
            match result {
                Ok(s) => staged.push(s),
                Err(NotStaged::Skipped(why)) => reports.push(line(id, Outcome::Skipped, why)),
                Err(NotStaged::Failed(why)) => reports.push(line(id, Outcome::Failed, why)),
            }
        }
        let names: Vec<IdentityReport> = staged
            .iter()
            .map(|s| {
                let why = "the filesystem filled up during its batch; left unchanged".to_string();
                IdentityReport::unchanged(&s.id, Outcome::Failed, why)
            })
            .collect();
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
        let (committed, next) = rayon::join(
            || commit.batch(batch as u32, fleet, staged, &calls),
            || {
                chunks
                    .get(batch + 1)
                    .map(|c| stage_chunk(work, c, &meter))
                    .unwrap_or_default()
            },
        );
        prepared = next;
        let committed = match committed {
            Ok(committed) => committed,
            Err(err) => match err.downcast::<journal::NoSpace>() {
                Ok(journal::NoSpace(why)) => {
                    reports.extend(names);
                    stopped = Some(Stop::NoSpace(why));
                    prepared = Vec::new();
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        let mut lines: Vec<(IdentityId, Option<FileId>, IdentityReport)> = committed
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
            run_deploy_hooks(h, &calls, &mut lines, &mut commit)?;
        }
        reports.extend(lines.into_iter().map(|(_, _, line)| line));
    }
    meter.finish();
    Ok(Batches {
        identities: reports,
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

type StagedChunk<'a> = Vec<(&'a IdentityId, Result<Staged, NotStaged>)>;

fn stage_chunk<'a, W: Work>(
    work: &W,
    chunk: &[(&'a IdentityId, &W::Item)],
    meter: &Meter,
) -> StagedChunk<'a> {
    chunk
        .par_iter()
        .map(|(id, item)| {
            let staged = work.stage(id, item);
            meter.tick();
            (*id, staged)
        })
        .collect()
}

fn line(id: &IdentityId, outcome: Outcome, reason: String) -> IdentityReport {
    IdentityReport::unchanged(id, outcome, reason)
}
