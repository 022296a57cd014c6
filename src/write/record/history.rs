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

/// Hook attempts that failed or timed out, over every run the store records: the sum of the
/// reports' `counts.hooks_failed` (`rekey_hooks_failed_total`; reports are never removed, so it
/// only grows). Only each report's counts are kept of it. A report that cannot be read counts
/// nothing; a store that cannot be listed is an error.
pub(crate) fn hooks_failed_total(store: &Store) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct CountsOnly {
        counts: super::run_report::Counts,
    }
    let mut total = 0u64;
    for run in store.runs()? {
        let Ok(text) = std::fs::read_to_string(run.report()) else {
            continue;
        };
        if let Ok(report) = serde_json::from_str::<CountsOnly>(&text) {
            total += report.counts.hooks_failed as u64;
        }
    }
    Ok(total)
}

/// The newest run of the fleet at `store` that left a readable report: what the metrics show as
/// the last run.
pub(crate) fn last_run(store: &Store) -> Option<Report> {
    let runs = store.runs().ok()?;
    runs.iter().rev().find_map(|run| read_report(run).ok())
}
