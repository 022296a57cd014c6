//! `report.json`: what one writing run did, identity by identity, built in one place
//! ([`Report::of`]) for a run that ends and for one finished by a replay; how it is shown (its
//! table for people, its JSON) is `shown`'s. No secret: names, outcomes, reasons, digests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calls::{HookResult, HookStatus};
pub(crate) use super::entries::RunCommand;
use crate::digest::Digest;
use crate::exit::Exit;

/// The report format version. Reports of version 1 (no outcome, dates, details) and 2 (the
/// fleet's counts 0 where the run did not judge it, not `null`) still read.
pub(crate) const VERSION: u32 = 3;

mod attention;
mod lines;
mod shown;
mod stream;

pub(crate) use attention::Attention;

pub(crate) use lines::{
    CertChange, Details, IdentityReport, KeyChange, NeedsPerson, Outcome, RetriedHook,
    RetriedHooks, TokenChange,
};
pub(crate) use stream::{Lines, Tally};

/// Report times, as RFC 3339 to the second (`2026-11-28T00:00:00Z`), the form every report has.
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::classify::stamp(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// How a run went, as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RunOutcome {
    /// Every identity attempted was done.
    #[default]
    #[serde(rename = "done")]
    Done,
    /// There was nothing to change.
    #[serde(rename = "nothing to do")]
    NothingToDo,
    /// Some identities were done, some not (skipped, failed, or not reached).
    #[serde(rename = "partial")]
    Partial,
    /// Identities were to be changed and none was.
    #[serde(rename = "failed")]
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    pub(crate) version: u32,
    pub(crate) run_id: String,
    pub(crate) command: RunCommand,
    /// `--dry-run`: the report the run would write; nothing was written (never saved).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) dry_run: bool,
    #[serde(default)]
    pub(crate) outcome: RunOutcome,
    /// The exit code of the run (in a report written by a replay: the one it would have had).
    #[serde(default)]
    pub(crate) exit_code: u8,
    /// The wall clock when the run started.
    #[serde(with = "rfc3339")]
    pub(crate) started: DateTime<Utc>,
    /// The wall clock when the run ended.
    #[serde(default, with = "rfc3339")]
    pub(crate) finished: DateTime<Utc>,
    #[serde(default)]
    pub(crate) duration_seconds: f64,
    /// The run date: new validity starts here.
    #[serde(with = "rfc3339")]
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) root: String,
    /// The policy in force (rotating runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_sha256: Option<Digest>,
    /// `apply`: the SHA-256 of the plan file as read, to match the signed review, the file and
    /// the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan_file_sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rolls_back: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operator: Option<String>,
    pub(crate) recovered_by_replay: bool,
    /// Why the run stopped before its end (a full filesystem, a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stopped: Option<String>,
    /// What a person should know about the run (new credentials already expired, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    /// `--no-hooks`: no hook ran (and none is pending from this run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) hooks_skipped: bool,
    /// Hooks of earlier runs that were pending and ran first, with how they ended.
    /// (Held: a report read back. A run's own are set aside in `retried`, and written here.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) retried_hooks: Vec<RetriedHook>,
    /// The post hooks of this run (once, when it changed something).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) post_hooks: Vec<HookResult>,
    pub(crate) counts: Counts,
    /// Every identity this run acted on or was asked to.
    pub(crate) identities: Vec<IdentityReport>,
    /// What was already there and is left for a person: identities that need `recover` and
    /// problems, with their reasons (rotating runs; a run that does not judge the fleet has
    /// none).
    /// (Held: a report read back. A run's own is set aside in `left`, and written after
    /// these: this is the last field a report's JSON has.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) needs_attention: Vec<NeedsPerson>,
    /// What a run's own report leaves for a person, set aside ([`Report::attention`]).
    #[serde(skip)]
    pub(crate) left: Option<std::sync::Arc<crate::aside::Aside<NeedsPerson>>>,
    /// The hooks of earlier runs a run's own report ran first, set aside ([`Report::retried`]).
    #[serde(skip)]
    pub(crate) retried: Option<std::sync::Arc<RetriedHooks>>,
    /// The deploy hooks of its identities that failed (counted as the lines passed: a report
    /// streamed holds no identities).
    #[serde(skip)]
    pub(crate) own_hooks_failed: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Counts {
    /// Identities whose files were replaced.
    pub(crate) done: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    /// Credentials (certificates and tokens) replaced; for `rollback`, the files put back.
    #[serde(default)]
    pub(crate) credentials: usize,
    /// Identities that need `recover` after the run (not its failures); `null` from a run that
    /// does not judge the fleet (a rollback, a run finished by replay).
    #[serde(default)]
    pub(crate) needs_recover: Option<usize>,
    /// Identities with a problem after the run, as `status` counts them; `null` as above.
    #[serde(default)]
    pub(crate) problems: Option<usize>,
    /// Fleet issues: paths under `nodes/` that are not identities and are problems; `null` as
    /// above.
    #[serde(default)]
    pub(crate) fleet_issues: Option<usize>,
    /// Hooks that failed or timed out (this run's and the retried ones): they stay pending.
    #[serde(default)]
    pub(crate) hooks_failed: usize,
}

/// Who asked for a run and why, where the command records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Notes {
    /// `apply`: the digest of the plan file it read.
    pub(crate) plan_file_sha256: Option<Digest>,
    pub(crate) rolls_back: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) operator: Option<String>,
}

/// Everything a report says besides its identities.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) run_id: String,
    pub(crate) dry_run: bool,
    pub(crate) command: RunCommand,
    pub(crate) started: DateTime<Utc>,
    pub(crate) finished: DateTime<Utc>,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) root: String,
    pub(crate) notes: Notes,
    pub(crate) recovered_by_replay: bool,
    pub(crate) stopped: Option<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) fleet: FleetFacts,
    pub(crate) hooks_skipped: bool,
    pub(crate) retried_hooks: RetriedHooks,
}

/// What a rotating run found in the fleet besides its work.
#[derive(Debug, Default)]
pub(crate) struct FleetFacts {
    pub(crate) policy_sha256: Option<Digest>,
    /// What is left for a person, or `None` from a run that does not judge the fleet (a
    /// rollback puts files back without judging them; a replay finishes a run it did not
    /// start): its report's counts of them are `null`, never a 0 it did not count.
    pub(crate) needs_attention: Option<Attention>,
    /// The policy's `keep_runs`: a run that went well prunes older backups at its end.
    pub(crate) keep_runs: Option<usize>,
}

impl Report {
    /// What the metrics say of this run (`rekey_last_run_*`).
    pub(crate) fn last_run(&self) -> crate::metrics::LastRun {
        crate::metrics::LastRun {
            started: self.started,
            done: self.counts.done,
            skipped: self.counts.skipped,
            failed: self.counts.failed,
        }
    }

    /// The report of a run: identities sorted by (node, service), counted once, its outcome and
    /// exit code chosen here and nowhere else. A run `cut_short` (a full filesystem, a signal,
    /// a report that could not be saved) exits 1 when it changed nothing and 3 when it changed
    /// some; a failure of this run (3) wins over attention that was already there (4). Every run
    /// streams its lines ([`Report::of`]): this is the reference its tests compare with.
    #[cfg(test)]
    pub(crate) fn new(header: Header, mut identities: Vec<IdentityReport>) -> Report {
        identities.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
        let tally = Tally::of(&identities);
        let lines = identities.clone().into_iter().map(Ok);
        Report::of(header, &tally, identities, lines, None).expect("held lines read back")
    }

    /// The report of a run whose lines were counted in `tally` as they passed; `identities`
    /// are those it holds (none, for a run whose lines are streamed: see `stream`), `lines`
    /// every line, in order (met by merge with what was left for a person, and set aside in
    /// `dir`, else in `TMPDIR`).
    pub(crate) fn of(
        header: Header,
        tally: &Tally,
        identities: Vec<IdentityReport>,
        lines: impl Iterator<Item = std::io::Result<IdentityReport>>,
        dir: Option<&std::path::Path>,
    ) -> std::io::Result<Report> {
        // Counted after the run: an identity this run changed (a recovered one) is no longer
        // left for a person.
        let left = match &header.fleet.needs_attention {
            Some(attention) => Some(attention.left(lines, dir)?),
            None => None,
        };
        let rollback = header.command == RunCommand::Rollback;
        let counts = Counts {
            done: tally.done,
            skipped: tally.skipped,
            failed: tally.failed,
            credentials: if rollback {
                tally.files
            } else {
                tally.credentials
            },
            needs_recover: left.as_ref().map(|l| l.needs_recover),
            problems: left.as_ref().map(|l| l.problems),
            fleet_issues: left.as_ref().map(|l| l.fleet_issues),
            hooks_failed: 0,
        };
        let outcome = match (counts.done, tally.lines) {
            (_, 0) => RunOutcome::NothingToDo,
            (0, _) => RunOutcome::Failed,
            (done, all) if done == all => RunOutcome::Done,
            _ => RunOutcome::Partial,
        };
        let duration = (header.finished - header.started).num_milliseconds().max(0);
        let mut report = Report {
            version: VERSION,
            run_id: header.run_id,
            command: header.command,
            dry_run: header.dry_run,
            outcome,
            exit_code: 0,
            // To the second, as saved: the report in memory is the one read back.
            started: chrono::SubsecRound::trunc_subsecs(header.started, 0),
            finished: chrono::SubsecRound::trunc_subsecs(header.finished, 0),
            duration_seconds: duration as f64 / 1000.0,
            as_of: header.as_of,
            root: header.root,
            policy_sha256: header.fleet.policy_sha256,
            plan_file_sha256: header.notes.plan_file_sha256,
            rolls_back: header.notes.rolls_back,
            reason: header.notes.reason,
            operator: header.notes.operator,
            recovered_by_replay: header.recovered_by_replay,
            stopped: header.stopped,
            warnings: header.warnings,
            hooks_skipped: header.hooks_skipped,
            retried_hooks: Vec::new(),
            retried: (!header.retried_hooks.is_empty())
                .then(|| std::sync::Arc::new(header.retried_hooks)),
            post_hooks: Vec::new(),
            counts,
            identities,
            needs_attention: Vec::new(),
            left: left.map(|l| l.list),
            own_hooks_failed: tally.hooks_failed,
        };
        report.decide_exit();
        Ok(report)
    }

    /// The hooks of earlier runs the run ran first, in order: those it holds (a report read
    /// back), then those set aside (a run's own).
    pub(crate) fn retried(&self) -> impl Iterator<Item = std::io::Result<RetriedHook>> + '_ {
        let aside = self.retried.iter().flat_map(|r| r.read());
        self.retried_hooks.iter().cloned().map(Ok).chain(aside)
    }

    /// What the report leaves for a person, in order: those it holds, then those set aside.
    pub(crate) fn attention(&self) -> impl Iterator<Item = std::io::Result<NeedsPerson>> + '_ {
        let left = self.left.iter().flat_map(|l| l.read());
        self.needs_attention.iter().cloned().map(Ok).chain(left)
    }

    /// Adds the run's post hooks, which may change its exit code.
    pub(crate) fn with_post_hooks(&mut self, results: Vec<HookResult>) {
        self.post_hooks = results;
        self.decide_exit();
    }

    /// The exit code, from the counts: a run cut short (a full filesystem, a signal) exits 1
    /// when it changed nothing and 3 when it changed some; a failure of this run (an identity
    /// failed or skipped, a hook failed) is 3 and wins over attention already there, which is
    /// 4 for the commands that rotate what the fleet judges due, `rotate` and `apply`: the run
    /// went well but leaves identities for a person.
    fn decide_exit(&mut self) {
        let failed = |h: &HookResult| h.status != HookStatus::Ok;
        let held = self.retried_hooks.iter().map(|r| &r.result);
        self.counts.hooks_failed = self.own_hooks_failed
            + self.retried.as_ref().map_or(0, |r| r.failed())
            + self
                .post_hooks
                .iter()
                .chain(held)
                .filter(|h| failed(h))
                .count();
        let c = self.counts;
        let cut_short = self.stopped.is_some();
        let exit = if cut_short && c.done == 0 {
            Exit::Fatal
        } else if cut_short || c.failed + c.skipped + c.hooks_failed > 0 {
            Exit::WorkDue
        } else if matches!(self.command, RunCommand::Rotate | RunCommand::Apply)
            && [c.needs_recover, c.problems, c.fleet_issues]
                .into_iter()
                .flatten()
                .sum::<usize>()
                > 0
        {
            Exit::Attention
        } else {
            Exit::Ok
        };
        self.exit_code = exit as u8;
    }

    /// The exit code chosen in [`Report::of`].
    pub(crate) fn exit(&self) -> Exit {
        match self.exit_code {
            0 => Exit::Ok,
            1 => Exit::Fatal,
            3 => Exit::WorkDue,
            4 => Exit::Attention,
            _ => Exit::Usage,
        }
    }

    /// Marks a run whose report could not be saved: it was cut short.
    pub(crate) fn not_saved(&mut self) {
        let exit = if self.counts.done == 0 {
            Exit::Fatal
        } else {
            Exit::WorkDue
        };
        self.exit_code = exit as u8;
    }
}

#[cfg(test)]
mod tests;
