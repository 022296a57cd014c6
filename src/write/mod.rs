//! The write wing: one home for a writing run. [`WriteRun::begin`] checks the run date against
//! the clock, takes the writer lock, replays what an interrupted run left and installs the signal
//! handlers; [`WriteRun::start`] opens the run's directory and journal; [`Started::execute`] runs
//! the batches with progress, builds the report once, saves it, prints it and chooses the exit
//! code once. `apply`, `rotate`, `recover` and `rollback` only say *what* to change (a [`Work`]
//! and its items); none of them knows how a run is kept.
//!
//! ```text
//! begin ─▶ (survey, decide) ─▶ start ─▶ batches: stage ▸ journal ▸ rename ▸ commit ─▶ report ─▶ exit
//! ```

mod audit;
mod batches;
mod journal;
mod narrow;
mod report;
mod restore;
pub mod rotation;
mod signals;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};

pub use audit::requested as audit_requested;
pub use batches::{NotStaged, Stop, Work};
pub use narrow::{Narrowed, narrow};
pub use report::{Command, Notes, Outcome, Report};
pub use restore::{Now, Replaced, Restore};
pub use rotation::{Rotation, Target};
pub use state::{list_ids, read_report, runs_dir};

use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use report::{Header, IdentityReport};
use signals::Interrupt;

/// How far ahead of the system clock a run date may be (clock skew between hosts).
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// How a writing run is carried out and shown, decided once from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Worker threads; `None`: one per core.
    pub jobs: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Print the report as JSON instead of the table.
    pub json: bool,
    /// The wall clock when the process started: names the run, whatever the run date.
    pub started: DateTime<Utc>,
}

/// A writing run that holds the lock: nothing is written yet.
pub struct WriteRun {
    root: PathBuf,
    as_of: DateTime<Utc>,
    settings: Settings,
    interrupt: Interrupt,
    _lock: state::Lock,
}

impl WriteRun {
    /// Refuses a run date too far ahead of the clock, takes the lock of the fleet at `root`,
    /// replays whatever an interrupted run left, and from then on lets a signal stop the run
    /// between batches.
    pub fn begin(root: &Path, as_of: DateTime<Utc>, settings: Settings) -> Result<WriteRun> {
        check_run_date(as_of, settings.started)?;
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("failed to open fleet root {}", root.display()))?;
        let lock = state::lock(&root)?;
        let interrupt = Interrupt::install()?;
        for line in state::replay_interrupted(&root, settings.started)? {
            eprintln!("{line}");
        }
        Ok(WriteRun {
            root,
            as_of: chrono::SubsecRound::trunc_subsecs(as_of, 0),
            settings,
            interrupt,
            _lock: lock,
        })
    }

    /// The fleet root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The run date, to the second: new validity starts here.
    pub fn as_of(&self) -> DateTime<Utc> {
        self.as_of
    }

    /// Starts the run: its directory under `.rekey/runs/` and its journal.
    pub fn start(self, command: Command, notes: Notes) -> Result<Started> {
        let run = state::Run::start(
            &self.root,
            self.settings.started,
            command,
            self.as_of,
            &notes,
        )?;
        Ok(Started {
            write: self,
            run,
            command,
            notes,
        })
    }
}

/// Refuses a run date more than [`CLOCK_SKEW`] ahead of the system clock: what it would write
/// would not be valid yet for anyone using it now.
pub fn check_run_date(as_of: DateTime<Utc>, clock: DateTime<Utc>) -> Result<()> {
    if as_of > clock + CLOCK_SKEW {
        return Err(UsageError(format!(
            "the run date {} is ahead of the system clock ({}): what rekey writes would not be \
             valid yet; a writing command runs at the present or in the past (omit --as-of)",
            crate::classify::stamp(as_of),
            crate::classify::stamp(clock),
        ))
        .into());
    }
    Ok(())
}

/// The warning for credentials that expire before the system clock reads now.
pub fn expired_on_arrival(not_after: DateTime<Utc>, clock: DateTime<Utc>) -> Option<String> {
    (not_after <= clock).then(|| {
        format!(
            "the run date is so far back that what this run issues expired at {}, before the \
             system clock's now ({}): services cannot use it",
            crate::classify::stamp(not_after),
            crate::classify::stamp(clock),
        )
    })
}

/// A started run: its journal is open.
pub struct Started {
    write: WriteRun,
    run: state::Run,
    command: Command,
    notes: Notes,
}

impl Started {
    pub fn id(&self) -> &str {
        &self.run.id
    }

    /// Runs `work` over `items` in journaled batches; `refused` are identities left alone
    /// before staging, with why. Saves and prints the report and chooses the exit code.
    pub fn execute<W: Work>(
        mut self,
        work: &W,
        items: &BTreeMap<IdentityId, W::Item>,
        refused: Vec<(IdentityId, String)>,
        warnings: Vec<String>,
    ) -> Result<(Report, Exit)> {
        for w in &warnings {
            eprintln!("rekey: warning: {w}");
        }
        let root = self.write.root.clone();
        let progress = self.write.settings.progress;
        let interrupt = self.write.interrupt.clone();
        let run = &mut self.run;
        let done = pool(self.write.settings.jobs)?
            .install(|| batches::run(work, items, run, &root, progress, &interrupt))?;
        let mut identities = done.identities;
        identities.extend(refused.into_iter().map(|(id, why)| {
            IdentityReport::unchanged(id.node(), id.service(), Outcome::Skipped, why)
        }));
        let header = Header {
            run_id: self.run.id.clone(),
            command: self.command,
            started: self.write.settings.started,
            as_of: self.write.as_of,
            root: root.to_string_lossy().into_owned(),
            notes: self.notes,
            recovered_by_replay: false,
            stopped: done.stopped.as_ref().map(ToString::to_string),
            warnings,
        };
        let report = Report::new(header, identities);
        let saved = self.run.finish(&report);
        if report.command == Command::Recover {
            audit::settle(&root, &report, self.write.settings.started)?;
        }
        if let Err(err) = refresh_metrics(&root, self.write.as_of, &report) {
            eprintln!("rekey: warning: {err:#}; the run itself is unaffected");
        }
        let exit = conclude(
            &report,
            done.stopped.as_ref(),
            saved,
            self.write.settings.json,
        )?;
        Ok((report, exit))
    }
}

/// Rewrites the policy's `metrics_file`, when it names one, with the fleet as the run left it
/// (judged at the run date) and this run as the last one (docs/design.md §4, §5).
fn refresh_metrics(root: &Path, as_of: DateTime<Utc>, report: &Report) -> Result<()> {
    let Some(path) = crate::policy::load(root)?.policy.metrics_path(root) else {
        return Ok(());
    };
    let survey = crate::survey::Survey::take(root, as_of)?;
    let families = crate::metrics::Families { x509: true };
    crate::fsio::write_atomic_with(&path, 0o644, |w| {
        crate::metrics::write(&survey, report.last_run().as_ref(), families, &mut &mut *w)
    })
    .with_context(|| format!("failed to refresh metrics_file {}", path.display()))
}

/// Prints a run's report and says how it ended. A run stopped short, or whose report could not
/// be saved, exits 1 when it changed nothing and 3 when it changed some; a run with identities
/// skipped or failed exits 3.
fn conclude(
    report: &Report,
    stopped: Option<&Stop>,
    saved: Result<()>,
    json: bool,
) -> Result<Exit> {
    if json {
        crate::out::emit(&report.to_json())?;
    } else {
        crate::out::emit(&report.summary())?;
    }
    let counts = report.counts;
    if let Some(stop) = stopped {
        let again = match (stop, report.command) {
            (_, Command::Apply) => "make a new plan and apply it".to_string(),
            (_, command) => format!("run `rekey {}` again", command.as_str()),
        };
        let first = match stop {
            Stop::NoSpace(_) => "free some space and ",
            Stop::Interrupted(_) => "",
        };
        eprintln!(
            "rekey: error: {stop}; stopped after {} of {} identities, the rest are unchanged; \
             {first}{again}",
            counts.done,
            report.identities.len(),
        );
    }
    if let Err(err) = &saved {
        eprintln!(
            "rekey: error: {err:#}; the next writing command replays run {} and saves its report",
            report.run_id
        );
    }
    let cut_short = stopped.is_some() || saved.is_err();
    Ok(if cut_short && counts.done == 0 {
        Exit::Fatal
    } else if cut_short || counts.failed + counts.skipped > 0 {
        Exit::WorkDue
    } else {
        Exit::Ok
    })
}

fn pool(jobs: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = jobs {
        builder = builder.num_threads(n);
    }
    builder.build().context("failed to start worker threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_date_may_not_be_ahead_of_the_clock() {
        let clock: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        let cases = [
            ("now", TimeDelta::zero(), true),
            ("in the past", TimeDelta::days(-400), true),
            ("exactly the allowed skew", CLOCK_SKEW, true),
            (
                "a second past the skew",
                CLOCK_SKEW + TimeDelta::seconds(1),
                false,
            ),
            ("a year ahead", TimeDelta::days(365), false),
        ];
        for (name, ahead, ok) in cases {
            let got = check_run_date(clock + ahead, clock);
            assert_eq!(got.is_ok(), ok, "{name}");
            if let Err(e) = got {
                assert!(e.downcast_ref::<UsageError>().is_some(), "{name}: exit 2");
            }
        }
    }

    #[test]
    fn credentials_expired_on_arrival_are_named() {
        let clock: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        assert!(expired_on_arrival(clock + TimeDelta::seconds(1), clock).is_none());
        assert!(expired_on_arrival(clock, clock).is_some());
        assert!(expired_on_arrival(clock - TimeDelta::days(1), clock).is_some());
    }
}
