//! `report.json`: what one writing run did, identity by identity, built in one place
//! ([`Report::new`]) for a run that ends and for one finished by a replay, and its table for
//! people. No secret: names, outcomes, reasons, digests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::journal::FileChange;
use crate::classify::stamp;

/// The report format version.
pub const VERSION: u32 = 1;

/// The writing command a run was made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Apply,
    Rotate,
    Recover,
    Rollback,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Apply => "apply",
            Command::Rotate => "rotate",
            Command::Recover => "recover",
            Command::Rollback => "rollback",
        }
    }
}

/// What became of one identity in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Its files were replaced.
    Done,
    /// Left alone on purpose (the fleet's judgement, a change since the plan), with the reason.
    Skipped,
    /// Something went wrong; it is wholly as it was.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub version: u32,
    pub run_id: String,
    pub command: Command,
    /// The wall clock when the run started.
    pub started: String,
    /// The run date: new validity starts here.
    pub as_of: String,
    pub root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub recovered_by_replay: bool,
    /// Why the run stopped before its end (a full filesystem, a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// What a person should know about the run (new credentials already expired, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub counts: Counts,
    pub identities: Vec<IdentityReport>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityReport {
    pub node: String,
    pub service: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileChange>,
}

impl IdentityReport {
    /// An identity whose files were not replaced, with the reason.
    pub fn unchanged(node: &str, service: &str, outcome: Outcome, reason: String) -> Self {
        IdentityReport {
            node: node.to_string(),
            service: service.to_string(),
            outcome,
            reason,
            files: Vec::new(),
        }
    }
}

/// Who asked for a run and why, where the command records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub rolls_back: Option<String>,
    pub reason: Option<String>,
    pub operator: Option<String>,
}

/// Everything a report says besides its identities.
#[derive(Debug, Clone)]
pub struct Header {
    pub run_id: String,
    pub command: Command,
    pub started: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
    pub root: String,
    pub notes: Notes,
    pub recovered_by_replay: bool,
    pub stopped: Option<String>,
    pub warnings: Vec<String>,
}

impl Report {
    /// What the metrics say of this run (`rekey_last_run_*`); `None` if its start is unreadable.
    pub fn last_run(&self) -> Option<crate::metrics::LastRun> {
        let started = DateTime::parse_from_rfc3339(&self.started).ok()?;
        Some(crate::metrics::LastRun {
            started: started.with_timezone(&Utc),
            done: self.counts.done,
            skipped: self.counts.skipped,
            failed: self.counts.failed,
        })
    }

    /// The report of a run: identities sorted by (node, service), counted once.
    pub fn new(header: Header, mut identities: Vec<IdentityReport>) -> Report {
        identities.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
        let count = |o: Outcome| identities.iter().filter(|i| i.outcome == o).count();
        let counts = Counts {
            done: count(Outcome::Done),
            skipped: count(Outcome::Skipped),
            failed: count(Outcome::Failed),
        };
        Report {
            version: VERSION,
            run_id: header.run_id,
            command: header.command,
            started: stamp(header.started),
            as_of: stamp(header.as_of),
            root: header.root,
            rolls_back: header.notes.rolls_back,
            reason: header.notes.reason,
            operator: header.notes.operator,
            recovered_by_replay: header.recovered_by_replay,
            stopped: header.stopped,
            warnings: header.warnings,
            counts,
            identities,
        }
    }

    /// The table printed after a run: counts, then every identity not done.
    pub fn summary(&self) -> String {
        let c = self.counts;
        let mut out = format!(
            "run {} ({}): {} done, {} skipped, {} failed\nreport: {}/.rekey/runs/{}/report.json\n",
            self.run_id,
            self.command.as_str(),
            c.done,
            c.skipped,
            c.failed,
            self.root,
            self.run_id
        );
        let mut rows = vec![
            ["NODE", "SERVICE", "OUTCOME", "REASON"]
                .map(String::from)
                .to_vec(),
        ];
        for r in self
            .identities
            .iter()
            .filter(|i| i.outcome != Outcome::Done)
        {
            let outcome = match r.outcome {
                Outcome::Done => "done",
                Outcome::Skipped => "skipped",
                Outcome::Failed => "failed",
            };
            rows.push(vec![
                r.node.clone(),
                r.service.clone(),
                outcome.to_string(),
                r.reason.clone(),
            ]);
        }
        if rows.len() > 1 {
            out.push('\n');
            out.push_str(&crate::report::align(&rows));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }

    /// The report as pretty JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report always serializes");
        text.push('\n');
        text
    }
}
