//! How a report is shown: the table printed after a run, for people, and the JSON document
//! (`report.json`, `--format json`), its identities streamed from the run's lines.

use super::{HookStatus, IdentityReport, NeedsPerson, Outcome, Report, RunCommand, RunOutcome};
use crate::count::count;

impl Report {
    /// The table printed after a run: counts, then every identity not done (every identity, in
    /// a dry run), those it holds and then the run's lines, then the hooks that failed and the
    /// warnings. `read` gives the lines from their start each time it is called: a first pass
    /// measures the table's columns (and keeps the few hooks that failed), the second writes
    /// each row as it comes, so that no row is held.
    pub(crate) fn write_summary<I>(
        &self,
        read: impl Fn() -> std::io::Result<I>,
        mut w: &mut dyn std::io::Write,
    ) -> std::io::Result<()>
    where
        I: Iterator<Item = std::io::Result<IdentityReport>>,
    {
        w.write_all(self.summary_head().as_bytes())?;
        let every = |lines: I| self.identities.iter().cloned().map(Ok).chain(lines);
        let header = ["NODE", "SERVICE", "OUTCOME", "REASON"].map(String::from);
        let mut table = crate::report::Aligned::default();
        table.measure(&header);
        let mut rows = 0usize;
        for r in every(read()?) {
            if let Some(row) = self.row(r?) {
                table.measure(&row);
                rows += 1;
            }
        }
        if rows > 0 {
            w.write_all(b"\n")?;
            table.write(&mut w, &header)?;
            for r in every(read()?) {
                if let Some(row) = self.row(r?) {
                    table.write(&mut w, &row)?;
                }
            }
        }
        // The hooks that failed, a line each, read again rather than held: a run whose every
        // deploy hook failed has one per identity.
        for r in every(read()?) {
            let r = r?;
            for h in &r.hooks {
                hook_failed(w, Some(&r.dir), h)?;
            }
        }
        for h in &self.post_hooks {
            hook_failed(w, None, h)?;
        }
        for r in self.retried() {
            let r = r?;
            hook_failed(w, r.dir.as_deref(), &r.result)?;
        }
        for warning in &self.warnings {
            writeln!(w, "warning: {warning}")?;
        }
        Ok(())
    }

    /// The summary's first lines: what the run did, and where its report is.
    fn summary_head(&self) -> String {
        let c = self.counts;
        let what = if self.outcome == RunOutcome::NothingToDo {
            "nothing to do".to_string()
        } else {
            let replaced = match self.command {
                RunCommand::Rollback => count(c.credentials, "file put back", "files put back"),
                _ => count(c.credentials, "credential", "credentials"),
            };
            format!(
                "{} done ({replaced}), {} skipped, {} failed",
                c.done, c.skipped, c.failed
            )
        };
        let mut out = if self.dry_run {
            // `recover` previews unless told `--yes`; every other command when told `--dry-run`.
            let asked = match self.command {
                RunCommand::Recover => "without --yes",
                _ => "--dry-run",
            };
            format!(
                "dry run ({}): {what}\nnothing was written ({asked})\n",
                self.command.as_str(),
            )
        } else {
            format!(
                "run {} ({}): {what}\nreport: {}/.rekey/runs/{}/report.json\n",
                self.run_id,
                self.command.as_str(),
                self.root,
                self.run_id
            )
        };
        if let Some(sha256) = &self.plan_file_sha256 {
            out.push_str(&format!("plan file sha256: {}\n", sha256.hex()));
        }
        out
    }

    /// An identity's row in the summary's table: every identity not done, or in a dry run
    /// every identity.
    fn row(&self, r: IdentityReport) -> Option<[String; 4]> {
        let outcome = match r.outcome {
            Outcome::Done if !self.dry_run => return None,
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        };
        Some([r.node, r.service, outcome.to_string(), r.reason])
    }

    /// The report as pretty JSON, with a final newline.
    pub(crate) fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report always serializes");
        text.push('\n');
        text
    }
}

/// The summary's line for hook `h` (of the identity in `dir`), when it failed or timed out.
fn hook_failed(
    w: &mut dyn std::io::Write,
    dir: Option<&str>,
    h: &super::HookResult,
) -> std::io::Result<()> {
    let what = match h.status {
        HookStatus::Ok => return Ok(()),
        HookStatus::TimedOut => "timed out",
        _ => "failed",
    };
    let at = dir.map(|d| format!("{d}: ")).unwrap_or_default();
    // A hook that never started has no output to point at.
    let output = if h.log.is_empty() {
        String::new()
    } else {
        format!("; output in {}", h.log)
    };
    writeln!(
        w,
        "hook {what}: {at}{} ({}{output}); it stays pending",
        h.source, h.detail
    )
}

/// The top-level key of the identities in the pretty JSON of a report that holds none.
const EMPTY: &str = "\n  \"identities\": []";

/// The top-level keys that follow `retried_hooks` in a report's pretty JSON, the first present.
const POST_HOOKS: &str = "\n  \"post_hooks\": ";
const COUNTS: &str = "\n  \"counts\": ";

impl Report {
    /// The report as pretty JSON, with a final newline, its identities (after any it holds)
    /// from `lines` and what it leaves for a person (after any it holds) from where it was set
    /// aside: byte for byte [`Report::to_json`] of the report holding them all.
    pub(crate) fn write_json(
        &self,
        lines: impl Iterator<Item = std::io::Result<IdentityReport>>,
        w: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        self.write_json_with(lines, self.attention(), w)
    }

    /// [`Report::write_json`] with what it leaves for a person from `attention` (its
    /// [`Report::attention`], read errors perhaps noted on the way).
    pub(crate) fn write_json_with(
        &self,
        lines: impl Iterator<Item = std::io::Result<IdentityReport>>,
        attention: impl Iterator<Item = std::io::Result<NeedsPerson>>,
        w: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let mut whole = self.clone();
        let held = std::mem::take(&mut whole.identities);
        whole.needs_attention.clear();
        whole.left = None;
        whole.retried_hooks.clear();
        whole.retried = None;
        let head = whole.to_json();
        let at = head
            .find(EMPTY)
            .ok_or_else(|| std::io::Error::other("a report always has its identities"))?;
        // `retried_hooks` (absent when empty) in its place, before `post_hooks` or `counts`.
        let mut retried = self.retried().peekable();
        let mut from = 0;
        if retried.peek().is_some() {
            let before = [POST_HOOKS, COUNTS].iter().find_map(|key| head.find(key));
            let before = before.ok_or_else(|| std::io::Error::other("a report has its counts"))?;
            w.write_all(&head.as_bytes()[..before])?;
            w.write_all(b"\n  \"retried_hooks\": [")?;
            write_elements(retried, w)?;
            w.write_all(b",")?;
            from = before;
        }
        // Up to the identities' `[`; then each identity, then `needs_attention` (a report's last
        // field, absent when empty), then what follows.
        w.write_all(&head.as_bytes()[from..at + EMPTY.len() - 1])?;
        let lines = held.into_iter().map(Ok).chain(lines);
        if write_elements(lines, w)? == 0 {
            w.write_all(b"]")?;
        }
        let mut attention = attention.peekable();
        if attention.peek().is_some() {
            w.write_all(b",\n  \"needs_attention\": [")?;
            write_elements(attention, w)?;
        }
        w.write_all(&head.as_bytes()[at + EMPTY.len()..])
    }
}

/// The elements of a top-level array of a pretty report, each on its own indented lines, and
/// the array's closing line when there was one; how many.
fn write_elements<T: serde::Serialize>(
    elements: impl Iterator<Item = std::io::Result<T>>,
    w: &mut dyn std::io::Write,
) -> std::io::Result<usize> {
    let mut n = 0;
    for element in elements {
        w.write_all(if n == 0 { b"\n    " } else { b",\n    " })?;
        let text = serde_json::to_string_pretty(&element?).map_err(std::io::Error::from)?;
        w.write_all(text.replace('\n', "\n    ").as_bytes())?;
        n += 1;
    }
    if n > 0 {
        w.write_all(b"\n  ]")?;
    }
    Ok(n)
}
