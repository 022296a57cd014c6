//! The history of runs: each run the store records with its report, read once, and what one
//! run says of another (`rolls_back`), for `runs`, `rollback`, `status` and retention.

use anyhow::{Context, Result};

use super::run_report::{Lines, Report};
use crate::store::{RunDir, Store};

/// Reads run `run`'s `report.json`.
pub(crate) fn read_report(run: &RunDir) -> Result<Report> {
    let path = run.report();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a rekey report", path.display()))
}

/// Saves run `run`'s `report.json`, atomically, its identities streamed from `lines`.
pub(crate) fn save_report(run: &RunDir, report: &Report, lines: &Lines) -> Result<()> {
    crate::fsio::write_atomic_with(&run.report(), 0o600, |w| {
        report.write_json(lines.read()?, w)
    })
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
/// only grows). A report that cannot be read counts nothing; a store that cannot be listed is
/// an error.
pub(crate) fn hooks_failed_total(store: &Store) -> Result<u64> {
    let runs = store.runs()?;
    Ok(runs
        .iter()
        .filter_map(|run| hooks_failed_of(&run.report()))
        .map(|n| n as u64)
        .sum())
}

/// A report's `counts.hooks_failed`, read from the start of the file only as far as its counts,
/// which rekey writes before the identities (most of a large report: a monitor reading every
/// run's counts must not parse them); the whole report when the counts are not found there.
fn hooks_failed_of(path: &std::path::Path) -> Option<usize> {
    use std::io::Read;
    /// The top-level key as `Report::to_json` writes it (nested keys are indented further).
    const KEY: &[u8] = b"\n  \"counts\": ";
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut found = None;
    loop {
        let n = file.read(&mut chunk).ok()?;
        let from = head.len().saturating_sub(KEY.len());
        head.extend_from_slice(&chunk[..n]);
        if found.is_none() {
            found = head[from..]
                .windows(KEY.len())
                .position(|w| w == KEY)
                .map(|at| from + at + KEY.len());
        }
        let counts = found.and_then(|at| {
            let mut values = serde_json::Deserializer::from_slice(&head[at..]).into_iter();
            values.next()?.ok()
        });
        if let Some(counts) = counts {
            let counts: super::run_report::Counts = counts;
            return Some(counts.hooks_failed);
        }
        if n == 0 {
            let whole: Report = serde_json::from_slice(&head).ok()?;
            return Some(whole.counts.hooks_failed);
        }
    }
}

/// The newest run of the fleet at `store` that left a readable report: what the metrics show as
/// the last run.
pub(crate) fn last_run(store: &Store) -> Option<Report> {
    let runs = store.runs().ok()?;
    runs.iter().rev().find_map(|run| read_report(run).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as rekey writes it (pretty: top-level keys indented by two), with `before` put
    /// in its warnings, ahead of the counts; compact when not `pretty`.
    fn report(before: &str, hooks_failed: usize, pretty: bool) -> String {
        let fields = [
            r#""version": 2"#.to_string(),
            r#""run_id": "r""#.to_string(),
            r#""command": "rotate""#.to_string(),
            r#""started": "2026-11-28T00:00:00Z""#.to_string(),
            r#""as_of": "2026-11-28T00:00:00Z""#.to_string(),
            r#""root": "/f""#.to_string(),
            r#""recovered_by_replay": false"#.to_string(),
            format!(r#""warnings": ["{before}"]"#),
            format!(
                r#""counts": {{"done": 1, "skipped": 0, "failed": 0, "hooks_failed": {hooks_failed}}}"#
            ),
            r#""identities": []"#.to_string(),
        ];
        match pretty {
            true => format!("{{\n  {}\n}}\n", fields.join(",\n  ")),
            false => format!("{{{}}}", fields.join(",")),
        }
    }

    #[test]
    fn a_reports_failed_hooks_are_read_from_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(64 * 1024 - 300);
        let cases = [
            (
                "pretty, counts in the first chunk",
                report("w", 2, true),
                Some(2),
            ),
            (
                "counts across the first chunk's end",
                report(&long, 3, true),
                Some(3),
            ),
            (
                "compact: the whole report is read",
                report("w", 4, false),
                Some(4),
            ),
            (
                "cut short before its counts",
                report(&long, 5, true)[..1000].to_string(),
                None,
            ),
            ("not a report", "{}".to_string(), None),
            (
                "what follows the counts is never parsed",
                report("w", 6, true).replace(r#""identities": []"#, r#""identities": [ not json"#),
                Some(6),
            ),
        ];
        for (name, text, want) in cases {
            let path = dir.path().join("report.json");
            std::fs::write(&path, &text).unwrap();
            assert_eq!(hooks_failed_of(&path), want, "{name}");
        }
    }
}
