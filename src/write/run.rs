//! A writing run before it starts: the run date checked against the clock, the fleet's lock
//! taken, whatever an interrupted run left replayed, the pending hooks of earlier runs run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};

use super::hooks::{HookArgs, HookSet};
use super::pending::{self, PendingHook, Target as DiscardTarget};
use super::progress::Progress;
use super::prune::{self, Pruned};
use super::record::run_report::RetriedHooks;
use super::signals::Interrupt;
use crate::exit::UsageError;
use crate::policy::Loaded;
use crate::store::{Lock, Store};

/// How far ahead of the system clock a run date may be (clock skew between hosts).
pub(crate) const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// How a writing run is carried out and shown, decided once from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker threads; `None`: one per core.
    pub jobs: Option<usize>,
    /// How to show progress on stderr.
    pub progress: Progress,
    /// How the report is shown when the run ends.
    pub shown: Shown,
    /// The wall clock when the process started: names the run, whatever the run date.
    pub started: DateTime<Utc>,
    /// Hooks named on the command line, or `--no-hooks`.
    pub hooks: HookArgs,
    /// Where the run's effects go: to disk, or nowhere (`--dry-run`).
    pub sink: Sink,
}

/// Where a writing run's effects go. A dry run is the run with the sink that writes nothing:
/// it takes the same decisions through the same code (the fleet judged, every identity staged,
/// its files checked, its new credentials made) and builds the report the run would write; only
/// the last step is skipped: the lock, the replay of an interrupted run, pending hooks, the
/// run's directory and journal, backups, temporary files, renames, removals, hooks, the audit
/// log, the metrics file and pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sink {
    /// The run writes.
    #[default]
    Disk,
    /// `--dry-run`: the run records what it would have written, and writes nothing.
    Nowhere,
}

/// How a run's report is shown when the run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shown {
    /// The table, for people.
    #[default]
    Table,
    /// The report as JSON, for pipelines.
    Json,
    /// Not printed: the command renders the report it gets back (`apply --dry-run --format
    /// html`, the review page of a plan file).
    ByCommand,
}

/// What a run holds while it may write: the writer lock, or nothing (a dry run takes no lock:
/// it writes nothing, and a writer that runs meanwhile is as if it ran just before).
pub(super) enum Effects {
    Disk(
        #[expect(
            dead_code,
            reason = "held, never read: the lock is released when dropped"
        )]
        Lock,
    ),
    Nowhere,
}

impl Effects {
    pub(super) fn writes(&self) -> bool {
        matches!(self, Effects::Disk(_))
    }
}

/// A writing run that holds the lock: nothing is written yet.
pub(crate) struct WriteRun {
    pub(super) root: PathBuf,
    /// The policy in force, read once by [`preflight`].
    pub(super) policy: Loaded,
    pub(super) as_of: DateTime<Utc>,
    pub(super) settings: Settings,
    pub(super) interrupt: Interrupt,
    pub(super) hooks: HookSet,
    /// The fleet root, open: identities are opened beneath it, never through a path.
    pub(super) fleet: crate::fsio::RootDir,
    /// Pending hooks of earlier runs, run first.
    pub(super) retried: RetriedHooks,
    /// Pending command-line hooks this command line did not give again.
    pub(super) not_given: usize,
    pub(super) effects: Effects,
}

/// The fleet at `root` with its writer lock held and whatever an interrupted run left replayed:
/// nothing else has happened, no hook has run.
struct Locked {
    root: PathBuf,
    lock: Lock,
    /// The fleet root, open: identities are opened beneath it, never through a path.
    fleet: crate::fsio::RootDir,
}

impl Locked {
    /// Takes the lock of the fleet at `root`, canonical and trusted ([`Trusted`]).
    fn take(trusted: &Trusted, started: DateTime<Utc>) -> Result<Locked> {
        let root = trusted.0.clone();
        let lock = Store::of(&root).lock()?;
        let fleet = crate::fsio::RootDir::open(&root)
            .with_context(|| format!("failed to open fleet root {}", root.display()))?;
        for line in super::replay::replay_interrupted(&root, started)? {
            eprintln!("{line}");
        }
        Ok(Locked { root, lock, fleet })
    }
}

/// `rekey hooks discard`: under the writer lock (running no hook), drops the pending hook
/// calls `target` names, journaled and audited as discarded by `operator`. Returns them.
pub(crate) fn discard_hooks(
    root: &Path,
    target: &DiscardTarget,
    operator: &str,
    started: DateTime<Utc>,
) -> Result<Vec<PendingHook>> {
    let locked = Locked::take(&Trusted::check(root)?, started)?;
    let discarded = pending::discard(&locked.root, target, operator, started)?;
    drop(locked.lock);
    Ok(discarded)
}

/// `rekey hooks retry`: takes the lock as every writing run does, which runs the pending hooks of
/// earlier runs first (unless `--no-hooks`), and writes nothing else. Returns the calls that ran,
/// with how each ended, and how many command-line hooks stay pending because this command line
/// did not give them again.
pub(crate) fn retry_hooks(
    root: &Path,
    as_of: DateTime<Utc>,
    settings: &Settings,
) -> Result<(RetriedHooks, usize)> {
    let run = WriteRun::begin(root, as_of, settings)?;
    Ok((run.retried, run.not_given))
}

impl WriteRun {
    /// Refuses a run date too far ahead of the clock, takes the lock of the fleet at `root`,
    /// replays whatever an interrupted run left, runs the hooks earlier runs left pending (unless
    /// `--no-hooks`; each resolved from the configuration as it is now, see `pending`), and from
    /// then on lets a signal stop the run between batches.
    pub(crate) fn begin(
        root: &Path,
        as_of: DateTime<Utc>,
        settings: &Settings,
    ) -> Result<WriteRun> {
        check_run_date(as_of, settings.started)?;
        WriteRun::begin_checked(preflight(root)?, as_of, settings)
    }

    /// [`WriteRun::begin`] on a fleet [`preflight`] already checked (a command that read the
    /// fleet's records before it decided to write).
    pub(crate) fn begin_checked(
        checked: Preflight,
        as_of: DateTime<Utc>,
        settings: &Settings,
    ) -> Result<WriteRun> {
        let settings = settings.clone();
        check_run_date(as_of, settings.started)?;
        let (root, effects, fleet) = match settings.sink {
            Sink::Disk => {
                let Locked { root, lock, fleet } =
                    Locked::take(&checked.trusted, settings.started)?;
                (root, Effects::Disk(lock), fleet)
            }
            Sink::Nowhere => {
                let root = checked.trusted.0.clone();
                let fleet = crate::fsio::RootDir::open(&root)
                    .with_context(|| format!("failed to open fleet root {}", root.display()))?;
                // What the run would meet before its first batch: another writer (it would
                // refuse), an interrupted run (it would replay it), pending hooks (it would retry
                // them, and how they end counts in its exit code).
                Store::of(&root).refuse_if_locked()?;
                for line in super::replay::waiting(&root)? {
                    eprintln!("{line}");
                }
                let mut pending = 0;
                super::pending::each(&root, |_| {
                    pending += 1;
                    Ok(())
                })?;
                if pending > 0 && !settings.hooks.skip {
                    eprintln!(
                        "rekey: the run would first retry {} (rekey hooks list); how they end \
                         counts in its exit code, which this dry run cannot know",
                        crate::count::count(pending, "pending hook call", "pending hook calls")
                    );
                }
                (root, Effects::Nowhere, fleet)
            }
        };
        let interrupt = Interrupt::install()?;
        let policy = checked.policy;
        let hooks = HookSet::load(&root, &policy.policy, &settings.hooks)?;
        let retried = if settings.hooks.skip || !effects.writes() {
            pending::Retried::default()
        } else {
            pending::retry(&root, &fleet, &hooks, settings.started)?
        };
        Ok(WriteRun {
            root,
            policy,
            as_of,
            settings,
            interrupt,
            hooks,
            fleet,
            retried: retried.ran,
            not_given: retried.not_given,
            effects,
        })
    }

    /// Removes the backups of the runs beyond the newest `keep` (see `prune`); a dry run
    /// removes nothing and says what it would remove.
    pub(crate) fn prune(&self, keep: usize) -> Result<Pruned> {
        prune::prune(
            &self.root,
            keep,
            !self.effects.writes(),
            self.settings.started,
        )
    }

    /// The progress of a run over `total` identities, shown as the run's settings say.
    pub(crate) fn meter(&self, total: usize) -> super::progress::Meter {
        super::progress::Meter::new(self.settings.progress, total)
    }

    /// Whether this is a dry run (the sink that writes nothing).
    pub(crate) fn dry(&self) -> bool {
        !self.effects.writes()
    }

    /// Where the run sets aside what it must not hold (what it chose, what needs a person): the
    /// fleet's `.rekey/`, which only root can change, since what is set aside decides what root
    /// writes and reports; a dry run's, which writes nothing in the fleet, in `TMPDIR`.
    pub(crate) fn aside(&self) -> Option<PathBuf> {
        (!self.dry()).then(|| crate::store::Store::of(&self.root).dir().to_path_buf())
    }

    /// The fleet root, canonical.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The policy in force, read once when the run began.
    pub(crate) fn policy(&self) -> &Loaded {
        &self.policy
    }

    /// The fleet surveyed at the run date, under the run's policy.
    pub(crate) fn survey(&self) -> Result<crate::survey::Survey> {
        crate::survey::Survey::take_under(&self.root, self.as_of, Some(self.policy.clone()))
    }

    /// The fleet root, open: what identities are opened beneath.
    pub(crate) fn fleet(&self) -> &crate::fsio::RootDir {
        &self.fleet
    }

    /// The run date, to the second: new validity starts here.
    pub(crate) fn as_of(&self) -> DateTime<Utc> {
        self.as_of
    }
}

/// A fleet root, canonical, whose trusted paths only root or the invoking user can change
/// (docs/design.md §8): what a writing run may take the lock of.
pub(super) struct Trusted(PathBuf);

impl Trusted {
    /// Before anything in the fleet is opened for writing: what supplies a command or a place to
    /// write must be the invoking user's alone.
    fn check(root: &Path) -> Result<Trusted> {
        let canonical = crate::survey::open_root(root)?;
        crate::trust::require(&canonical)?;
        Ok(Trusted(canonical))
    }
}

/// A fleet a writing run may start on, and the policy it runs under (read once, here).
pub(crate) struct Preflight {
    trusted: Trusted,
    policy: Loaded,
}

impl Preflight {
    /// The fleet root, canonical.
    pub(crate) fn root(&self) -> &Path {
        &self.trusted.0
    }
}

/// What a writing run refuses to start on, before the lock, and its dry run refuses alike (it is
/// the same run, with the sink that writes nothing): a trusted path another user could change
/// (§8), a policy that does not load, then a `metrics_file` that cannot be written as `-o` would
/// be (§4).
pub(crate) fn preflight(root: &Path) -> Result<Preflight> {
    let trusted = Trusted::check(root)?;
    let policy = crate::policy::load(&trusted.0)?;
    let metrics = policy.policy.metrics_path(&trusted.0);
    crate::out::metrics_file(metrics.as_deref(), &trusted.0, crate::out::Probe::TryCreate)
        .context(
            "refusing to start: nothing was written; fix metrics_file in rekey.toml (or remove \
             it) and run again",
        )?;
    Ok(Preflight { trusted, policy })
}

/// Refuses a run date more than [`CLOCK_SKEW`] ahead of the system clock: what it would write
/// would not be valid yet for anyone using it now.
pub(crate) fn check_run_date(as_of: DateTime<Utc>, clock: DateTime<Utc>) -> Result<()> {
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
}
