//! The crash replay every writer performs before anything else: whatever an interrupted run left
//! is finished or undone through its journal, and the run gets its report.

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::journal;
use super::record::audit;
use super::record::entries::{self, Change, Record};
use super::record::history;
use super::record::run_report::{
    Details, FleetFacts, Header, IdentityReport, Notes, Outcome, Report, RunCommand,
};
use crate::fsio;
use crate::store::{RunDir, Store};

/// Finishes or undoes whatever an interrupted run left, before any new work: its identities end
/// wholly old or new, its report is written and, for `recover`, its audit lines are paired with
/// outcomes. Returns a line per run replayed, for stderr.
pub(crate) fn replay_interrupted(root: &Path, now: DateTime<Utc>) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for run in Store::of(root).runs()? {
        let Some(records) = interrupted(&run)? else {
            continue;
        };
        let path = run.journal();
        // A CA rotation stage changes ca/ before its batches: that change is settled first.
        super::ca_tree::replay(root, &run, &records)?;
        let (finished, undone) = journal::replay(&path, root, &run.backup())?;
        // Killed while saving its report: the half-written copy goes, a whole one is written.
        fsio::remove_stale_temps(run.path())?;
        let report = replayed_report(root, &run, &records, &finished, &undone, now);
        history::write_report(&run, &report)?;
        if report.command == RunCommand::Recover {
            audit::settle(
                root,
                &report,
                report.identities.iter().cloned().map(Ok),
                now,
            )?;
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

/// The journal of `run` when it was interrupted (it did not end, or has no report yet).
fn interrupted(run: &RunDir) -> Result<Option<Vec<Record>>> {
    let path = run.journal();
    if !path.is_file() {
        return Ok(None);
    }
    // Most runs ended: their journals are read a line at a time, never held whole.
    if run.report().is_file() && entries::ended(&path)? {
        return Ok(None);
    }
    let records = entries::read(&path)?;
    let ended = records.iter().any(|r| matches!(r, Record::End { .. }));
    Ok((!ended || !run.report().is_file()).then_some(records))
}

/// What a dry run says of the runs an interrupted writer left: the run it previews would replay
/// them first, and the dry run, which writes nothing, does not (it judges the fleet as it is).
pub(crate) fn waiting(root: &Path) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for run in Store::of(root).runs()? {
        if interrupted(&run)?.is_none() {
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

/// The report of a run finished by a replay: every identity of a committed batch or finished
/// now is done, every identity undone failed, all from the journal.
fn replayed_report(
    root: &Path,
    run: &RunDir,
    records: &[Record],
    finished: &[Change],
    undone: &[Change],
    now: DateTime<Utc>,
) -> Report {
    let start = records.iter().find_map(|r| match r {
        Record::Start {
            command,
            as_of,
            operator,
            reason,
            ..
        } => Some((command.as_str(), as_of.as_str(), operator, reason)),
        _ => None,
    });
    let command = start
        .and_then(|s| RunCommand::named(s.0))
        .unwrap_or(RunCommand::Rotate);
    let started = run.started().unwrap_or_default();
    let as_of = start
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.1).ok())
        .map_or(started, |t| t.with_timezone(&Utc));
    let mut done = entries::committed(records);
    done.extend(finished.iter().cloned());
    let mut identities: Vec<IdentityReport> = done
        .into_iter()
        .map(|c| IdentityReport::done(&c.id, c.files, Details::default()))
        .collect();
    identities.extend(undone.iter().map(|c| {
        let why = "interrupted before its files were replaced: left as it was".to_string();
        IdentityReport::unchanged(&c.id, Outcome::Failed, why)
    }));
    identities.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
    identities.dedup_by(|a, b| a.node == b.node && a.service == b.service);
    let header = Header {
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
            reason: start.and_then(|s| s.3.clone()),
            operator: start.and_then(|s| s.2.clone()),
        },
        recovered_by_replay: true,
        stopped: None,
        warnings: Vec::new(),
        fleet: FleetFacts::default(),
        hooks_skipped: false,
        retried_hooks: Vec::new(),
    };
    Report::new(header, identities)
}
