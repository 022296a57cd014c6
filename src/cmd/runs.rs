//! `rekey runs`: one line per run recorded in the fleet, oldest first.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::store::{RunDir, Store};
use crate::write::{self, History};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    /// One JSON document (an array, oldest run first) instead of the table.
    pub json: bool,
}

pub(crate) fn runs(o: &Options) -> Result<Exit> {
    let root = crate::survey::open_root(&o.root)?;
    let history = History::read(&Store::of(&root))?;
    // A journal that cannot be read leaves the pending hooks unknown, not the list of runs.
    let pending = match write::pending_hooks(&root) {
        Ok(pending) => Some(pending),
        Err(e) => {
            let why = crate::values::Escaped::new(&format!("{e:#}")).to_string();
            eprintln!("rekey: warning: pending hooks not known: {why}");
            None
        }
    };
    let pending_of = |id: &str| {
        let pending = pending.as_ref()?;
        Some(pending.iter().filter(|p| p.run_id == id).count())
    };
    // A run that replaced files and whose backup is gone (pruned) cannot be rolled back.
    let pruned = |run: &RunDir, replaced: usize| replaced > 0 && !run.backup().exists();
    let rolled_back_by = |id| -> Vec<&str> {
        history
            .rolled_back_by(id)
            .map(|(run, _)| run.id())
            .collect()
    };
    if o.json {
        let runs: Vec<serde_json::Value> = history
            .runs
            .iter()
            .map(|(run, r)| (run, run.id(), r))
            .map(|(run, id, r)| match r {
                Some(r) => serde_json::json!({
                    "run_id": id,
                    "command": r.command,
                    "outcome": r.outcome,
                    "exit_code": r.exit_code,
                    "started": crate::classify::stamp(r.started),
                    "as_of": crate::classify::stamp(r.as_of),
                    "counts": r.counts,
                    "rolls_back": r.rolls_back,
                    "rolled_back_by": rolled_back_by(id),
                    "recovered_by_replay": r.recovered_by_replay,
                    "stopped": r.stopped,
                    "hooks_failed": r.counts.hooks_failed,
                    "hooks_pending": pending_of(id),
                    "backups_pruned": pruned(run, r.counts.credentials),
                }),
                None => serde_json::json!({ "run_id": id, "report": null }),
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&runs).expect("runs always serialize");
        text.push('\n');
        emit(&text)?;
        return Ok(Exit::Ok);
    }
    let mut rows = vec![
        [
            "RUN", "STARTED", "COMMAND", "AS OF", "DONE", "SKIPPED", "FAILED", "HOOKS", "NOTE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (run, report) in &history.runs {
        let id = run.id();
        let Some(r) = report else {
            let mut row = vec![id.to_string()];
            row.extend(["-"; 6].map(String::from));
            row.push(hooks_cell(0, pending_of(id)));
            row.push("no report (interrupted?)".into());
            rows.push(row);
            continue;
        };
        let mut notes = Vec::new();
        if let Some(target) = &r.rolls_back {
            notes.push(format!("rolls back {target}"));
        }
        for other in rolled_back_by(id) {
            notes.push(format!("rolled back by {other}"));
        }
        if r.recovered_by_replay {
            notes.push("interrupted, then replayed".into());
        }
        if let Some(stopped) = &r.stopped {
            notes.push(format!("stopped: {stopped}"));
        }
        if pruned(run, r.counts.credentials) {
            notes.push("backups pruned: cannot be rolled back".into());
        }
        rows.push(vec![
            id.to_string(),
            crate::classify::stamp(r.started),
            r.command.as_str().to_string(),
            crate::classify::stamp(r.as_of),
            r.counts.done.to_string(),
            r.counts.skipped.to_string(),
            r.counts.failed.to_string(),
            hooks_cell(r.counts.hooks_failed, pending_of(id)),
            notes.join("; "),
        ]);
    }
    emit(&crate::report::align(&rows))?;
    Ok(Exit::Ok)
}

/// The HOOKS cell: hook attempts of the run that failed, and its calls still pending (`None`:
/// not known).
fn hooks_cell(failed: usize, pending: Option<usize>) -> String {
    let Some(pending) = pending else {
        return format!("{failed} failed, pending not known");
    };
    match (failed, pending) {
        (0, 0) => "-".to_string(),
        (failed, 0) => format!("{failed} failed"),
        (0, pending) => format!("{pending} pending"),
        (failed, pending) => format!("{failed} failed, {pending} pending"),
    }
}
