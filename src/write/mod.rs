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
pub mod hooks;
mod journal;
mod narrow;
mod pending;
mod progress;
mod prune;
mod reap;
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
pub use pending::{PendingHook, Target as DiscardTarget, list as pending_hooks, operator};
pub use progress::Progress;
pub use prune::Pruned;
pub use report::{Attention, Command, FleetFacts, Notes, Outcome, Report};
pub use restore::{Now, Replaced, Restore};
pub use rotation::{Rotation, Target};
pub use state::{list_ids, read_report, runs_dir};

use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use hooks::{HookArgs, HookSet};
use report::{Header, IdentityReport};
use signals::Interrupt;

/// How far ahead of the system clock a run date may be (clock skew between hosts).
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// How a writing run is carried out and shown, decided once from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker threads; `None`: one per core.
    pub jobs: Option<usize>,
    /// How to show progress on stderr.
    pub progress: Progress,
    /// Print the report as JSON instead of the table.
    pub json: bool,
    /// The wall clock when the process started: names the run, whatever the run date.
    pub started: DateTime<Utc>,
    /// Hooks named on the command line, or `--no-hooks`.
    pub hooks: HookArgs,
}

/// A writing run that holds the lock: nothing is written yet.
pub struct WriteRun {
    root: PathBuf,
    as_of: DateTime<Utc>,
    settings: Settings,
    interrupt: Interrupt,
    hooks: HookSet,
    /// The fleet root, open: identities are opened beneath it, never through a path.
    fleet: crate::fsio::RootDir,
    /// Pending hooks of earlier runs, run first.
    retried: Vec<report::RetriedHook>,
    /// Pending command-line hooks this command line did not give again.
    not_given: usize,
    _lock: state::Lock,
}

/// The fleet at `root` with its writer lock held and whatever an interrupted run left replayed:
/// nothing else has happened, no hook has run.
struct Locked {
    root: PathBuf,
    lock: state::Lock,
    /// The fleet root, open: identities are opened beneath it, never through a path.
    fleet: crate::fsio::RootDir,
}

impl Locked {
    fn take(root: &Path, started: DateTime<Utc>) -> Result<Locked> {
        let root = crate::survey::open_root(root)?;
        // Before anything in the fleet is opened for writing: what supplies a command or a place
        // to write must be the invoking user's alone (docs/design.md §8).
        crate::trust::require(&root)?;
        let lock = state::lock(&root)?;
        let fleet = crate::fsio::RootDir::open(&root)
            .with_context(|| format!("failed to open fleet root {}", root.display()))?;
        for line in state::replay_interrupted(&root, started)? {
            eprintln!("{line}");
        }
        Ok(Locked { root, lock, fleet })
    }
}

/// `rekey hooks discard`: under the writer lock (running no hook), drops the pending hook
/// calls `target` names, journaled and audited as discarded by `operator`. Returns them.
pub fn discard_hooks(
    root: &Path,
    target: &DiscardTarget,
    operator: &str,
    started: DateTime<Utc>,
) -> Result<Vec<PendingHook>> {
    let locked = Locked::take(root, started)?;
    let discarded = pending::discard(&locked.root, target, operator, started)?;
    drop(locked.lock);
    Ok(discarded)
}

impl WriteRun {
    /// Refuses a run date too far ahead of the clock, takes the lock of the fleet at `root`,
    /// replays whatever an interrupted run left, runs the hooks earlier runs left pending (unless
    /// `--no-hooks`; each resolved from the configuration as it is now, see `pending`), and from
    /// then on lets a signal stop the run between batches.
    pub fn begin(root: &Path, as_of: DateTime<Utc>, settings: &Settings) -> Result<WriteRun> {
        let settings = settings.clone();
        check_run_date(as_of, settings.started)?;
        let canonical = preflight(root)?;
        let Locked { root, lock, fleet } = Locked::take(&canonical, settings.started)?;
        let interrupt = Interrupt::install()?;
        let policy = crate::policy::load(&root)?.policy;
        let hooks = HookSet::load(&root, &policy, &settings.hooks)?;
        let retried = if settings.hooks.skip {
            pending::Retried::default()
        } else {
            pending::retry(&root, &fleet, &hooks, settings.started)?
        };
        Ok(WriteRun {
            root,
            as_of,
            settings,
            interrupt,
            hooks,
            fleet,
            retried: retried.ran,
            not_given: retried.not_given,
            _lock: lock,
        })
    }

    /// How many pending command-line hooks stay pending because this command line did not give
    /// them again.
    pub fn hooks_still_pending(&self) -> usize {
        self.not_given
    }

    /// Removes the backups of the runs beyond the newest `keep` (see `prune`); writes nothing
    /// when `dry`.
    pub fn prune(&self, keep: usize, dry: bool) -> Result<Pruned> {
        prune::prune(&self.root, keep, dry, self.settings.started)
    }

    /// The pending hooks of earlier runs that this run ran first, and how they ended.
    pub fn retried_hooks(&self) -> &[report::RetriedHook] {
        &self.retried
    }

    /// The fleet root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The fleet root, open: what identities are opened beneath.
    pub fn fleet(&self) -> &crate::fsio::RootDir {
        &self.fleet
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
            next_call: 0,
        })
    }
}

/// Refuses to start a writing run whose policy's `metrics_file` could not be written as `-o`
/// would be (docs/design.md §4): checked before the lock is taken, so nothing is written.
fn check_metrics_file(root: &Path) -> Result<()> {
    let policy = crate::policy::load(root)?.policy;
    let path = policy.metrics_path(root);
    crate::out::metrics_file(path.as_deref(), root, crate::out::Probe::TryCreate).context(
        "refusing to start: nothing was written; fix metrics_file in rekey.toml (or remove it) \
         and run again",
    )?;
    Ok(())
}

/// What a writing run refuses to start on, before the lock, and its preview (`rotate --dry-run`,
/// `recover` without `--yes`, `rollback --dry-run`) refuses alike, so that a preview never
/// promises a run that would not start: a trusted path another user could change (§8), then a
/// `metrics_file` that cannot be written. Returns the root, canonical.
pub fn preflight(root: &Path) -> Result<PathBuf> {
    let canonical = crate::survey::open_root(root)?;
    crate::trust::require(&canonical)?;
    check_metrics_file(&canonical)?;
    Ok(canonical)
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
    /// The last hook call number used in this run.
    next_call: u32,
}

impl Started {
    pub fn id(&self) -> &str {
        &self.run.id
    }

    /// Runs `work` over `items` in journaled batches, then [`Started::finish`]es the run.
    /// `refused` are identities left alone before staging, with why.
    pub fn execute<W: Work>(
        mut self,
        work: &W,
        items: &BTreeMap<IdentityId, W::Item>,
        refused: Vec<(IdentityId, String)>,
        warnings: Vec<String>,
        fleet: FleetFacts,
    ) -> Result<(Report, Exit)> {
        for w in &warnings {
            eprintln!("rekey: warning: {}", crate::values::Escaped::new(w));
        }
        let root = self.write.root.clone();
        let progress = self.write.settings.progress;
        let interrupt = self.write.interrupt.clone();
        let run_dir = self.run.dir.clone();
        let run_id = self.run.id.clone();
        let hooking = (!self.write.settings.hooks.skip).then(|| batches::Hooking {
            set: &self.write.hooks,
            ctx: hooks::Context {
                root: &root,
                fleet: &self.write.fleet,
                run_id: &run_id,
                run_dir: &run_dir,
                post_env: Vec::new(),
            },
            next: 0,
        });
        let run = &mut self.run;
        let root_dir = &self.write.fleet;
        let done = pool(self.write.settings.jobs)?
            .install(|| batches::run(work, items, run, root_dir, progress, &interrupt, hooking))?;
        self.next_call = done.last_call;
        let mut identities = done.identities;
        identities.extend(skipped(refused));
        self.finish(identities, done.stopped, warnings, fleet)
    }

    /// Ends a run that had nothing to change (but perhaps identities it refused).
    pub fn nothing_to_do(
        self,
        refused: Vec<(IdentityId, String)>,
        fleet: FleetFacts,
    ) -> Result<(Report, Exit)> {
        self.finish(skipped(refused).collect(), None, Vec::new(), fleet)
    }

    /// Ends the run: builds its report (once), saves it, runs the post hooks when something
    /// changed, closes the journal, settles the audit log, prints the report and says how the
    /// run ended. Also the whole of a run that found nothing to do.
    pub fn finish(
        mut self,
        identities: Vec<IdentityReport>,
        stopped: Option<Stop>,
        warnings: Vec<String>,
        fleet: FleetFacts,
    ) -> Result<(Report, Exit)> {
        let root = self.write.root.clone();
        let keep_runs = fleet.keep_runs;
        let header = Header {
            run_id: self.run.id.clone(),
            command: self.command,
            started: self.write.settings.started,
            finished: chrono::Utc::now(),
            as_of: self.write.as_of,
            root: root.to_string_lossy().into_owned(),
            notes: std::mem::take(&mut self.notes),
            recovered_by_replay: false,
            stopped: stopped.as_ref().map(ToString::to_string),
            warnings,
            fleet,
            hooks_skipped: self.write.settings.hooks.skip,
            retried_hooks: std::mem::take(&mut self.write.retried),
        };
        let mut report = Report::new(header, identities);
        if !report.hooks_skipped && report.counts.done > 0 {
            let results = self.post_hooks(&report)?;
            report.with_post_hooks(results);
        }
        let saved = self.run.finish(&report);
        if saved.is_err() {
            report.not_saved();
        }
        if report.command == Command::Recover {
            audit::settle(&root, &report, self.write.settings.started)?;
        }
        if let Err(err) = refresh_metrics(&root, self.write.as_of, &report) {
            eprintln!(
                "rekey: warning: {}; the run itself is unaffected",
                crate::values::Escaped::new(&format!("{err:#}"))
            );
        }
        tell(&report, stopped.as_ref(), &saved, self.write.settings.json)?;
        if let Some(keep) = keep_runs
            && matches!(report.exit(), Exit::Ok | Exit::Attention)
        {
            let pruned = prune::prune(&root, keep, false, self.write.settings.started)?;
            if !pruned.removed.is_empty() {
                eprintln!(
                    "rekey: removed the backups of {} older than the newest {keep} (keep_runs)",
                    crate::count::count(pruned.removed.len(), "run", "runs")
                );
            }
        }
        Ok((report.clone(), report.exit()))
    }
}

impl Started {
    /// Runs the post hooks of a run that changed something, journaled first (the report they
    /// are given is saved before they run).
    fn post_hooks(&mut self, report: &Report) -> Result<Vec<hooks::HookResult>> {
        let calls = self.write.hooks.post_calls(&mut self.next_call);
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        state::write_report(&self.run.dir, report)?;
        pending::mark(&self.run.dir)?;
        let record = journal::Record::Hooks {
            batch: None,
            calls: calls.clone(),
        };
        self.run.journal.append(&record)?;
        let ctx = hooks::Context {
            root: &self.write.root,
            fleet: &self.write.fleet,
            run_id: &self.run.id,
            run_dir: &self.run.dir,
            post_env: hooks::post_env(&self.run.dir.join("report.json"), &report.counts),
        };
        let mut results = Vec::new();
        for call in &calls {
            let result = hooks::run(call, &self.write.hooks, &ctx, None);
            self.run
                .journal
                .append(&journal::Record::hook_done(call.call, result.status))?;
            results.push(result);
        }
        reap::sweep();
        Ok(results)
    }
}

/// Rewrites the policy's `metrics_file`, when it names one, with the fleet as the run left it
/// (judged at the run date) and this run as the last one (docs/design.md §4, §5).
fn refresh_metrics(root: &Path, as_of: DateTime<Utc>, report: &Report) -> Result<()> {
    let path = crate::policy::load(root)?.policy.metrics_path(root);
    // Checked again as the run started it: a file swapped for a link, or a directory that
    // became a link into the fleet, since then is refused here.
    let Some(target) =
        crate::out::metrics_file(path.as_deref(), root, crate::out::Probe::TryCreate)?
    else {
        return Ok(());
    };
    let families = crate::metrics::Families { x509: true };
    let last_run = report.last_run();
    crate::survey::read(root, as_of, None, |scope, judged| {
        target.write(|w| {
            crate::metrics::write(scope, judged, last_run.as_ref(), families, &mut &mut *w)
        })
    })?
    .with_context(|| format!("failed to refresh metrics_file {}", target.path().display()))
}

fn skipped(refused: Vec<(IdentityId, String)>) -> impl Iterator<Item = IdentityReport> {
    refused
        .into_iter()
        .map(|(id, why)| IdentityReport::unchanged(id.node(), id.service(), Outcome::Skipped, why))
}

/// Prints a run's report (the table, or the JSON document) and, on stderr, why it stopped
/// short or could not be saved.
fn tell(report: &Report, stopped: Option<&Stop>, saved: &Result<()>, json: bool) -> Result<()> {
    if json {
        crate::out::emit(&report.to_json())?;
    } else {
        crate::out::emit(&report.summary())?;
    }
    if let Some(stop) = stopped {
        let again = match report.command {
            Command::Apply => "make a new plan and apply it".to_string(),
            command => format!("run `rekey {}` again", command.as_str()),
        };
        let first = match stop {
            Stop::NoSpace(_) => "free some space and ",
            Stop::Interrupted(_) => "",
        };
        eprintln!(
            "rekey: error: {stop}; stopped after {} of {}, the rest are unchanged; \
             {first}{again}",
            report.counts.done,
            crate::count::count(report.identities.len(), "identity", "identities"),
        );
    }
    if let Err(err) = saved {
        eprintln!(
            "rekey: error: {err:#}; the next writing command replays run {} and saves its report",
            report.run_id
        );
    }
    Ok(())
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
