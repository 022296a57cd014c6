//! The write protocol and its journal: how a batch of identities goes from old files to new ones
//! so that, after a crash at any instant, each identity ends wholly old or wholly new.
//!
//! For each batch:
//! 0. `unchanged` is journaled when the batch left identities as they were before staging them
//!    (skipped or failed, with why), for a replay's report; best effort on a full filesystem.
//! 1. `prepare` is journaled (and synced): which files of which identities will change, with the
//!    old and new digests. No secret is journaled; new contents exist only in temporary files.
//! 2. Each old file is hard-linked into the run's backup, each new one written to a temporary
//!    file beside it (`.rekey-new.<run-id>.<file>`), then one filesystem sync.
//! 3. `failed` is journaled when identities failed since `prepare` (with why, for a replay's
//!    report); then `ready`: the identities whose temporary files are all durable.
//! 4. The temporary files are renamed over the old ones (an identity whose directory was moved
//!    away meanwhile journaled `failed`), then one filesystem sync.
//! 5. `commit` is journaled.
//!
//! A run that stops early journals `stopped`, then each identity it does not attempt in an
//! `unchanged` record, a batch at a time.
//!
//! Replay after a crash: a batch with `ready` but no `commit` is finished (the renames redone
//! from the temporary files); a batch with `prepare` but no `ready` is undone (temporary files and
//! backups removed: nothing was renamed yet). Either way the batch is closed in the journal.
//!
//! Every step in an identity's directory is done through its handle ([`IdentityDir`]): the
//! directory is another user's, and may be swapped for a link at any moment (docs/design.md §8).

use std::path::Path;

use super::record::calls::HookCall;
use super::record::run_report::Details;
use crate::fsio::{self, RootDir};
use crate::names::IdentityId;
use crate::problem::Problem;
use anyhow::Result;
use rayon::prelude::*;

mod dropped;
mod files;
mod replaying;
mod staged;

use dropped::drop_hooks;
use files::{NotWritten, discard, finish, in_place, moved_away, stage, undone_in};
pub(crate) use files::{Temps, backup_path};
pub(crate) use replaying::{NotFinished, replay};
pub(crate) use staged::{NewFile, Secret, Staged};

pub(crate) use super::record::entries::{
    Change, Failure, FileChange, Journal, Record, Untouched, records,
};

/// What happened to one staged identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per identity of a batch, made once and moved into its report line"
)]
pub(crate) enum Committed {
    /// Wholly new: what changed, the report's details, and the directory it was done in
    /// (device and inode: its deploy hooks run there and nowhere else).
    Done(Change, Details, fsio::FileId),
    Failed {
        id: IdentityId,
        reason: String,
    },
}

/// Crash points for the crash and race tests, compiled only with the `crash-points` feature
/// (never into a release build): `REKEY_CRASH_AT=<step>` kills the process with SIGKILL when the
/// write protocol reaches that step (`prepared`, `staged`, `ready`, `renaming`, `renamed`,
/// `committed`, `hook_done` as each hook's end is journaled, `finishing` once a run's batches
/// are done and before its report is made, `post_hooks` before a run's post hooks run);
/// `REKEY_CRASH_AT=<step>#<n>` kills the n-th time it is reached;
/// `REKEY_PAUSE_AT=<step>` with `REKEY_PAUSE_FILE=<path>` creates that file there and waits (up
/// to a minute) until someone removes it, so that a test can change the fleet at that instant.
#[cfg(feature = "crash-points")]
pub(super) fn crash_point(step: &str) {
    static REACHED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let at = std::env::var("REKEY_CRASH_AT").unwrap_or_default();
    let (at, nth) = match at.split_once('#') {
        Some((at, nth)) => (at.to_string(), nth.parse::<u32>().unwrap_or(1)),
        None => (at, 1),
    };
    let kill = at == step && REACHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= nth;
    if kill {
        // SAFETY: sending SIGKILL to ourselves; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    if std::env::var_os("REKEY_PAUSE_AT").is_some_and(|v| v == step)
        && let Some(file) = std::env::var_os("REKEY_PAUSE_FILE")
        && std::fs::write(&file, step).is_ok()
    {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while Path::new(&file).exists() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(not(feature = "crash-points"))]
pub(super) fn crash_point(_step: &str) {}

/// One batch for [`commit_batch`]: its number, the identities staged, and those it left as they
/// were before staging (journaled first, for a replay's report).
pub(crate) struct Batch {
    pub(crate) number: u32,
    pub(crate) staged: Vec<Staged>,
    pub(crate) untouched: Vec<Untouched>,
}

/// Commits one batch through the protocol above. Identities that fail before their renames
/// are reported and left wholly old; the rest end wholly new.
pub(crate) fn commit_batch(
    journal: &mut Journal,
    Batch {
        number: batch,
        staged,
        untouched,
    }: Batch,
    fleet: &RootDir,
    (backup, temps): (&Path, &Temps),
    hooks: &[HookCall],
) -> Result<Vec<Committed>> {
    if !untouched.is_empty() {
        let noted = journal.append(&Record::Unchanged {
            batch,
            identities: untouched,
        });
        // Best effort on a full filesystem: nothing of these identities is on disk, and only a
        // replay's report would miss their lines; the batch's `prepare` meets a full filesystem
        // as it always has.
        if let Err(e) = noted
            && !fsio::caused_by_no_space(&e)
        {
            return Err(e);
        }
    }
    if staged.is_empty() {
        return Ok(Vec::new());
    }
    let changes: Vec<Change> = staged.iter().map(Staged::change).collect();
    journal
        .append(&Record::Prepare {
            batch,
            identities: changes.clone(),
        })
        .map_err(|e| no_space(e, ("not started", staged.len()), Vec::new()))?;
    crash_point("prepared");
    let written: Vec<Result<(), NotWritten>> =
        staged.par_iter().map(|s| stage(s, backup, temps)).collect();
    if let Some(full) = written
        .iter()
        .find_map(|w| w.as_ref().err().filter(|e| e.no_space))
    {
        // Every identity after this one would fail the same way: undo the whole batch and stop.
        // The identities that failed to stage removed their own files already.
        let (ok, ok_changes): (Vec<&Staged>, Vec<Change>) = staged
            .iter()
            .zip(&changes)
            .zip(&written)
            .filter(|(_, w)| w.is_ok())
            .map(|((s, c), _)| (s, c.clone()))
            .unzip();
        abort(
            journal,
            (batch, FILLED),
            fleet,
            (backup, temps),
            ok,
            &ok_changes,
        );
        let why = format!(
            "no space left on the filesystem: {}; the batch of {} was undone",
            full.reason,
            crate::count::count(staged.len(), "identity", "identities")
        );
        return Err(NoSpace(why, Vec::new()).into());
    }
    let mut changed = fsio::Changed::default();
    for (s, _) in staged.iter().zip(&written).filter(|(_, w)| w.is_ok()) {
        staged_in(&mut changed, s, backup);
    }
    fleet.make_durable(&changed)?;
    crash_point("staged");
    let mut results = Vec::with_capacity(staged.len());
    let mut ready = Vec::new();
    let mut go = Vec::new();
    for ((s, change), outcome) in staged.iter().zip(changes).zip(written) {
        let outcome = outcome.and_then(|()| {
            in_place(fleet, s).inspect_err(|_| discard(&s.dir, backup, temps, &change))
        });
        match outcome {
            Ok(()) => {
                ready.push(change.key());
                go.push((s, change));
            }
            Err(e) => {
                // `stage` (or `discard`) removed what it had created; anything else there is not
                // this run's.
                results.push(Committed::Failed {
                    id: s.id.clone(),
                    reason: e.reason,
                });
            }
        }
    }
    // The hooks of what will be renamed are journaled first: once a file is in place, its
    // hook is pending until it has run.
    let calls: Vec<HookCall> = hooks
        .iter()
        .filter(|c| {
            go.iter()
                .any(|(_, change)| c.id.as_ref() == Some(&change.id))
        })
        .cloned()
        .collect();
    // Those that failed are journaled first, for a replay's report.
    let noted = failed(journal, batch, &results);
    let noted_failures = noted.is_ok();
    let marked = noted.and_then(|()| {
        if calls.is_empty() {
            return Ok(());
        }
        journal.append(&Record::Hooks {
            batch: Some(batch),
            calls: calls.clone(),
        })
    });
    let marked = marked.and_then(|()| {
        journal.append(&Record::Ready {
            batch,
            identities: ready,
        })
    });
    if let Err(e) = marked {
        // Not ready, so nothing may be renamed: undo now rather than leave it to a replay.
        let (staged, changes): (Vec<&Staged>, Vec<Change>) = go.into_iter().unzip();
        let undone = staged.len();
        let why = if fsio::caused_by_no_space(&e) {
            FILLED
        } else {
            "its batch was undone when the journal could not be written: left as it was"
        };
        abort(
            journal,
            (batch, why),
            fleet,
            (backup, temps),
            staged,
            &changes,
        );
        // Those whose own failure is journaled keep it, in the run's report as in a replay's.
        let failed = if noted_failures {
            failures(&results)
        } else {
            Vec::new()
        };
        return Err(no_space(e, ("undone", undone), failed));
    }
    crash_point("ready");
    let renamed: Vec<Result<(), Problem>> = go
        .par_iter()
        .map(|(s, change)| {
            crash_point("renaming");
            finish(&s.dir, backup, temps, change)?;
            // Moved away by its owner meanwhile (the renames followed the directory, never a
            // link): what is at its name now was not rotated, and the run says so.
            in_place(fleet, s).map_err(|_| moved_away(s))
        })
        .collect();
    let mut changed = fsio::Changed::default();
    for (s, _) in &go {
        let s = *s;
        changed.dir(&s.dir);
    }
    let mut moved = Vec::new();
    for ((s, change), outcome) in go.into_iter().zip(renamed) {
        moved.push(match outcome {
            Ok(()) => Committed::Done(change, s.details.clone(), s.dir.file_id()),
            Err(problem) => {
                drop_hooks(journal, &calls, &s.id)?;
                Committed::Failed {
                    id: s.id.clone(),
                    reason: problem.to_string(),
                }
            }
        });
    }
    // Journaled as soon as known, for a replay's report, whatever instant the run dies at.
    failed(journal, batch, &moved)?;
    fleet.make_durable(&changed)?;
    crash_point("renamed");
    journal.append(&Record::Commit { batch })?;
    crash_point("committed");
    results.extend(moved);
    Ok(results)
}

/// What a batch undone by a full filesystem reports of each identity it had staged.
pub(crate) const FILLED: &str = "the filesystem filled up during its batch; left unchanged";

/// The identities of `results` that failed, with why.
fn failures(results: &[Committed]) -> Vec<Failure> {
    results
        .iter()
        .filter_map(|r| match r {
            Committed::Failed { id, reason } => Some(Failure {
                id: id.clone(),
                reason: reason.clone(),
            }),
            Committed::Done(..) => None,
        })
        .collect()
}

/// Journals the identities of `results` that failed, with why (nothing when none did).
fn failed(journal: &mut Journal, batch: u32, results: &[Committed]) -> Result<()> {
    let identities = failures(results);
    if identities.is_empty() {
        return Ok(());
    }
    journal.append(&Record::Failed { batch, identities })
}

/// The filesystem filled up during a batch: the batch was undone and the run must stop. The
/// identities whose own failure the journal recorded (the second field) keep it in the run's
/// report, as in a replay's; the rest of the batch is reported as filled up.
#[derive(Debug)]
pub(crate) struct NoSpace(pub String, pub Vec<Failure>);

impl std::fmt::Display for NoSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSpace {}

/// A journal write that failed because the filesystem is full becomes [`NoSpace`]: the run
/// stops there with what it has done so far, instead of failing as a whole.
fn no_space(
    err: anyhow::Error,
    (batch_was, identities): (&str, usize),
    failed: Vec<Failure>,
) -> anyhow::Error {
    if fsio::caused_by_no_space(&err) {
        NoSpace(
            format!(
                "no space left on the filesystem: {err:#}; the batch of {} was {batch_was}",
                crate::count::count(identities, "identity", "identities")
            ),
            failed,
        )
        .into()
    } else {
        err
    }
}

/// Undoes a batch before its `ready` mark: every identity stays wholly old, its report line
/// saying `why`. The `abort` record (with `why`, for a replay's report) is best effort; without
/// it, a replay undoes the batch again, which is harmless.
fn abort<'a>(
    journal: &mut Journal,
    (batch, why): (u32, &str),
    fleet: &RootDir,
    (backup, temps): (&Path, &Temps),
    staged: impl IntoIterator<Item = &'a Staged>,
    changes: &[Change],
) {
    let mut changed = fsio::Changed::default();
    for (s, change) in staged.into_iter().zip(changes) {
        discard(&s.dir, backup, temps, change);
        undone_in(&mut changed, &s.dir, &s.id, backup);
    }
    // The removals are durable before the record that says they were done; if they cannot be
    // made so, there is no record, and a replay undoes the batch again.
    if fleet.make_durable(&changed).is_ok() {
        let _ = journal.append(&Record::Abort {
            batch,
            reason: Some(why.to_string()),
        });
    }
}

/// What staging `s` changed: its directory (its temporary files were made durable as they were
/// written, where their filesystem needs that), its backup files and the backup's directories
/// (made by the staging) up to `backup/`.
fn staged_in<'a>(changed: &mut fsio::Changed<'a>, s: &'a Staged, backup: &Path) {
    for f in &s.files {
        changed.own_file(backup_path(backup, &s.id, &f.name));
    }
    changed.dir(&s.dir);
    let dir = crate::store::backup_of(backup, &s.id);
    changed.own_dir(fsio::beside(&dir).to_path_buf());
    changed.own_dir(dir);
    changed.own_dir(backup.to_path_buf());
}
