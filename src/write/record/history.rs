//! The history of runs: each run the store records with its report, read once, and what one
//! run says of another (`rolls_back`), for `runs`, `rollback`, `status` and retention.

use anyhow::{Context, Result};

use super::run_report::Report;
use crate::store::{RunDir, Store};

/// Reads run `run`'s `report.json`.
pub(crate) fn read_report(run: &RunDir) -> Result<Report> {
    let path = run.report();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a rekey report", path.display()))
}

/// Saves run `run`'s `report.json`, atomically.
pub(crate) fn write_report(run: &RunDir, report: &Report) -> Result<()> {
    crate::fsio::write_atomic(&run.report(), report.to_json().as_bytes(), 0o600)
}

/// Every run the store records, oldest first, each with its report if it has a readable one.
pub(crate) struct History {
    pub(crate) runs: Vec<(RunDir, Option<Report>)>,
}

impl History {
    pub(crate) fn read(store: &Store) -> Result<History> {
        let runs = store
            .runs()?
            .into_iter()
            .map(|run| {
                let report = read_report(&run).ok();
                (run, report)
            })
            .collect();
        Ok(History { runs })
    }

    /// The runs whose reports say they roll back run `id`, oldest first.
    pub(crate) fn rolled_back_by<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a RunDir, &'a Report)> {
        self.runs.iter().filter_map(move |(run, report)| {
            let report = report.as_ref()?;
            (report.rolls_back.as_deref() == Some(id)).then_some((run, report))
        })
    }
}

/// The newest run of the fleet at `store` that left a readable report: what the metrics show as
/// the last run.
pub(crate) fn last_run(store: &Store) -> Option<Report> {
    let runs = store.runs().ok()?;
    runs.iter().rev().find_map(|run| read_report(run).ok())
}
