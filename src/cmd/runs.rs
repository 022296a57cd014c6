//! `rekey runs`: one line per run recorded in the fleet, oldest first.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::write::{self, Report};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
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
        for (other, later) in &reports {
            if later.as_ref().and_then(|l| l.rolls_back.as_deref()) == Some(id.as_str()) {
                notes.push(format!("rolled back by {other}"));
            }
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
