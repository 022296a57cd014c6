//! The crash replay every writer performs before anything else: whatever an interrupted run left
//! is finished or undone through its journal, and the run gets its report.

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::journal;
use super::record::audit;
use super::record::entries::{self, Change};
use super::record::history;
use super::record::left::{Left, Part};
use super::record::run_report::{
    Details, FleetFacts, Header, IdentityReport, Lines, Notes, Outcome, Report, RetriedHooks,
    RunCommand, Tally,
};
use crate::fsio;
use crate::store::{RunDir, Store};

/// Finishes or undoes whatever an interrupted run left, before any new work: its identities end
/// wholly old or new, its report is written and, for `recover`, its audit lines are paired with
/// outcomes. Returns a line per run replayed, for stderr. The journal is read a line at a time
/// (twice: [`Left`]), and the report's lines are streamed as a run's are.
pub(crate) fn replay_interrupted(root: &Path, now: DateTime<Utc>) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for run in Store::of(root).runs()? {
        if !interrupted(&run)? {
            continue;
        }
        let path = run.journal();
        let left = Left::of(&path, entries::records(&path)?)?;
        // A CA rotation stage changes ca/ before its batches: that change is settled first.
        super::ca_tree::replay(root, &run, left.ca.as_ref())?;
        let (finished, undone) = journal::replay(&path, &left, root, &run.backup())?;
        // Killed while saving its report: the half-written copy goes, a whole one is written.
        fsio::remove_stale_temps(run.path())?;
        let lines = replayed_lines(&run, &left, &finished, &undone)?;
        let header = header(root, &run, &left, now);
        // Its lines hold no hook results: the hooks that failed are counted from the journal.
        let tally = Tally {
            hooks_failed: left.hooks_failed,
            ..lines.tally().clone()
        };
        let report = Report::of(header, &tally, Vec::new(), lines.read()?, None)?;
        history::save_report(&run, &report, &lines)?;
        if report.command == RunCommand::Recover {
            audit::settle(root, &report, lines.read()?, now)?;
        }
        let id = run.id();
        said.push(format!(
            "rekey: run {id} was interrupted: finished {}, left {} as {}",
            crate::count::count(finished.len(), "identity", "identities"),
            undone.len(),
            if undone.len() == 1 {
                "it was"
            } else {
                "they were"
            }
        ));
    }
    Ok(said)
}

/// Whether `run` was interrupted: its journal did not end, or it has no report yet. Most runs
/// ended: their journals are read a line at a time, never held whole.
fn interrupted(run: &RunDir) -> Result<bool> {
    let path = run.journal();
    if !path.is_file() {
        return Ok(false);
    }
    Ok(!(run.report().is_file() && entries::ended(&path)?))
}

/// What a dry run says of the runs an interrupted writer left: the run it previews would replay
/// them first, and the dry run, which writes nothing, does not (it judges the fleet as it is).
pub(crate) fn waiting(root: &Path) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for run in Store::of(root).runs()? {
        if !interrupted(&run)? {
            continue;
        }
        said.push(format!(
            "rekey: warning: run {} was interrupted; the run previewed here would replay it \
             first, and this dry run does not (it writes nothing)",
            run.id()
        ));
    }
    Ok(said)
}

/// The report lines of a run finished by a replay, in (node, service) order, each identity
/// once: every identity `finished` now, or made new by a committed batch, is done; every one
/// `undone`, or prepared by a closed batch and not made new, failed with why; every one a batch
/// left untouched as its `unchanged` record says. The closed batches are streamed from the
/// journal, a part per batch, the few lines of the batches replayed merged in at their place. A
/// journal whose batches are not in order (rekey writes none) is held and sorted instead, an
/// identity named twice reported once.
fn replayed_lines(
    run: &RunDir,
    left: &Left,
    finished: &[Change],
    undone: &[journal::NotFinished],
) -> Result<Lines> {
    let replayed = finished.iter().cloned().map(done).chain(
        undone
            .iter()
            .map(|(c, why)| IdentityReport::unchanged(&c.id, Outcome::Failed, why.clone())),
    );
    let parts = left.parts(entries::records(&run.journal())?);
    let dir = Some(run.path());
    if left.in_order {
        let mut lines = Lines::new(dir, replayed.collect());
        for part in parts {
            lines.batch(match part? {
                Part::Unchanged(_, untouched) => {
                    untouched.iter().map(IdentityReport::untouched).collect()
                }
                Part::Committed(_, done, failed) => committed(done, failed),
            });
        }
        lines.close();
        return Ok(lines);
    }
    let mut all = Vec::new();
    let mut untouched = Vec::new();
    for part in parts {
        match part? {
            Part::Committed(_, ready, unready) => all.extend(committed(ready, unready)),
            Part::Unchanged(_, left) => {
                untouched.extend(left.iter().map(IdentityReport::untouched))
            }
        }
    }
    all.extend(replayed);
    all.extend(untouched);
    // Stable: of an identity named twice, its committed line is the one kept.
    all.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
    all.dedup_by(|a, b| a.node == b.node && a.service == b.service);
    let mut lines = Lines::new(dir, Vec::new());
    lines.batch(all);
    lines.close();
    Ok(lines)
}

/// The lines of a committed batch: done, each identity it made wholly new; failed, each other
/// one it prepared, with why.
fn committed(done: Vec<Change>, failed: Vec<entries::Untouched>) -> Vec<IdentityReport> {
    let mut lines: Vec<IdentityReport> = done.into_iter().map(self::done).collect();
    lines.extend(failed.iter().map(IdentityReport::untouched));
    lines
}

/// The line of an identity whose files a replayed run replaced.
fn done(c: Change) -> IdentityReport {
    IdentityReport::done(&c.id, c.files, Details::default())
}

/// The report header of a run finished by a replay, from its journal's `start`.
fn header(root: &Path, run: &RunDir, left: &Left, now: DateTime<Utc>) -> Header {
    let start = left.start.as_ref();
    let command = start
        .and_then(|s| RunCommand::named(&s.command))
        .unwrap_or(RunCommand::Rotate);
    let started = run.started().unwrap_or_default();
    let as_of = start
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s.as_of).ok())
        .map_or(started, |t| t.with_timezone(&Utc));
    Header {
        run_id: run.id().to_string(),
        dry_run: false,
        command,
        started,
        finished: now,
        as_of,
        root: root.to_string_lossy().into_owned(),
        notes: Notes {
            plan_file_sha256: None,
            rolls_back: None,
            reason: start.and_then(|s| s.reason.clone()),
            operator: start.and_then(|s| s.operator.clone()),
        },
        recovered_by_replay: true,
        stopped: left.stopped.clone(),
        warnings: Vec::new(),
        fleet: FleetFacts::default(),
        hooks_skipped: false,
        retried_hooks: RetriedHooks::default(),
    }
}
