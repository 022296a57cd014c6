//! `rekey runs`: one line per run recorded in the fleet, oldest first.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::write::{self, Report};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    /// One JSON document (an array, oldest run first) instead of the table.
    pub json: bool,
}

pub fn runs(o: &Options) -> Result<Exit> {
    let runs_dir = write::runs_dir(&crate::survey::open_root(&o.root)?);
    let reports: Vec<(String, Option<Report>)> = write::list_ids(&runs_dir)?
        .into_iter()
        .map(|id| {
            let r = write::read_report(&runs_dir.join(&id)).ok();
            (id, r)
        })
        .collect();
    if o.json {
        let runs: Vec<serde_json::Value> = reports
            .iter()
            .map(|(id, r)| match r {
                Some(r) => serde_json::json!({
                    "run_id": id,
                    "command": r.command,
                    "outcome": r.outcome,
                    "exit_code": r.exit_code,
                    "started": r.started,
                    "as_of": r.as_of,
                    "counts": r.counts,
                    "rolls_back": r.rolls_back,
                    "rolled_back_by": rolled_back_by(&reports, id),
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
    for (id, report) in &reports {
        let Some(r) = report else {
            let mut row = vec![id.clone()];
            row.extend(["-"; 6].map(String::from));
            row.push("no report (interrupted?)".into());
            rows.push(row);
            continue;
        };
        let mut notes = Vec::new();
        if let Some(target) = &r.rolls_back {
            notes.push(format!("rolls back {target}"));
        }
        for other in rolled_back_by(&reports, id) {
            notes.push(format!("rolled back by {other}"));
        }
        if r.recovered_by_replay {
            notes.push("interrupted, then replayed".into());
        }
        if let Some(stopped) = &r.stopped {
            notes.push(format!("stopped: {stopped}"));
        }
        rows.push(vec![
            id.clone(),
            r.started.clone(),
            r.command.as_str().to_string(),
            r.as_of.clone(),
            r.counts.done.to_string(),
            r.counts.skipped.to_string(),
            r.counts.failed.to_string(),
            notes.join("; "),
        ]);
    }
    emit(&crate::report::align(&rows))?;
    Ok(Exit::Ok)
}

/// The runs that rolled back run `id`.
fn rolled_back_by<'a>(reports: &'a [(String, Option<Report>)], id: &str) -> Vec<&'a str> {
    reports
        .iter()
        .filter(|(_, r)| r.as_ref().and_then(|r| r.rolls_back.as_deref()) == Some(id))
        .map(|(other, _)| other.as_str())
        .collect()
}
