//! `rekey runs`: one line per run recorded in the fleet, oldest first.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::store::Store;
use crate::write::History;

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    /// One JSON document (an array, oldest run first) instead of the table.
    pub json: bool,
}

pub(crate) fn runs(o: &Options) -> Result<Exit> {
    let history = History::read(&Store::of(&crate::survey::open_root(&o.root)?))?;
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
            .map(|(run, r)| (run.id(), r))
            .map(|(id, r)| match r {
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
            "RUN", "STARTED", "COMMAND", "AS OF", "DONE", "SKIPPED", "FAILED", "NOTE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (run, report) in &history.runs {
        let id = run.id();
        let Some(r) = report else {
            let mut row = vec![id.to_string()];
            row.extend(["-"; 6].map(String::from));
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
        rows.push(vec![
            id.to_string(),
            crate::classify::stamp(r.started),
            r.command.as_str().to_string(),
            crate::classify::stamp(r.as_of),
            r.counts.done.to_string(),
            r.counts.skipped.to_string(),
            r.counts.failed.to_string(),
            notes.join("; "),
        ]);
    }
    emit(&crate::report::align(&rows))?;
    Ok(Exit::Ok)
}
