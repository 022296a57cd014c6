//! A started writing run: its batches, its report (built once, saved, printed), its post hooks,
//! the audit log settled, the metrics refreshed, and the exit code chosen once.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::batches::{self, Stop};
use super::hooks;
use super::journal;
use super::pending;
use super::progress::Meter;
use super::prune;
use super::reap;
use super::record::audit;
use super::record::history;
use super::record::run::Run;
use super::record::run_report::{FleetFacts, Header, Lines, Notes, Report, RunCommand};
use super::run::WriteRun;
use super::work::Work;
use crate::exit::Exit;
use crate::names::IdentityId;
use crate::store::Store;
use told::{handed, tell};

mod told;

impl WriteRun {
    /// Starts the run: its directory under `.rekey/runs/` and its journal, which names the
    /// run's post hooks first: a run cut off once it changed something has them run by the next
    /// writer (`pending`), as it runs the deploy hooks it left. A dry run: the id the run would
    /// have, and nothing on disk.
    pub(crate) fn start(self, command: RunCommand, notes: Notes) -> Result<Started> {
        let mut next_call = 0;
        let (run, post) = if self.effects.writes() {
            let mut run = Run::start(
                &Store::of(&self.root),
                self.settings.started,
                command,
                self.as_of,
                &notes,
            )?;
            let post = if self.settings.hooks.skip {
                Vec::new()
            } else {
                self.hooks.post_calls(&mut next_call)
            };
            if !post.is_empty() {
                pending::mark(&run.dir)?;
                run.journal.append(&journal::Record::Hooks {
                    batch: None,
                    calls: post.clone(),
                })?;
            }
            (Journaled::Run(run), post)
        } else {
            let id = crate::store::run_id_at(self.settings.started);
            (Journaled::DryRun(id), Vec::new())
        };
        Ok(Started {
            write: self,
            run,
            command,
            notes,
            next_call,
            post,
            changed_ca: false,
        })
    }
}

/// A run whose batches are done: what it found in the fleet is all that its report waits for.
pub(crate) struct Streamed {
    started: Started,
    lines: Lines,
    stopped: Option<Stop>,
    warnings: Vec<String>,
}

impl Streamed {
    /// Whether the run stopped before its end (a full filesystem, a signal).
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Ends the run ([`Started::finish`]) with what it found in the fleet.
    pub(crate) fn finish(self, fleet: FleetFacts) -> Result<(Report, Exit)> {
        let Streamed {
            started,
            lines,
            stopped,
            warnings,
        } = self;
        started.finish(lines, stopped, warnings, fleet)
    }
}

/// A started run's record: its directory and open journal, or, for a dry run, only the id it
/// would have.
enum Journaled {
    Run(Run),
    DryRun(String),
}

/// A started run: its journal is open (a dry run's is nowhere).
pub(crate) struct Started {
    write: WriteRun,
    run: Journaled,
    command: RunCommand,
    notes: Notes,
    /// The last hook call number used in this run.
    next_call: u32,
    /// The post hook calls journaled when the run started (none in a dry run).
    post: Vec<hooks::HookCall>,
    /// The run changed `ca/` (a CA rotation stage): it changed something, whatever its batches
    /// did, so its post hooks run.
    changed_ca: bool,
}

impl Started {
    pub(crate) fn id(&self) -> &str {
        match &self.run {
            Journaled::Run(run) => run.id(),
            Journaled::DryRun(id) => id,
        }
    }

    /// Notes that the run changed `ca/`.
    pub(super) fn changed_ca(&mut self) {
        self.changed_ca = true;
    }

    /// The fleet root, and the run's directory with its open journal (`None`: a dry run), for
    /// a step of the run outside its batches (a CA rotation stage's change of `ca/`).
    pub(super) fn record(
        &mut self,
    ) -> (
        &std::path::Path,
        Option<(&crate::store::RunDir, &mut journal::Journal)>,
    ) {
        let root = self.write.root.as_path();
        match &mut self.run {
            Journaled::Run(run) => (root, Some((&run.dir, &mut run.journal))),
            Journaled::DryRun(_) => (root, None),
        }
    }

    /// Runs `work` over `items` in journaled batches, then [`Started::finish`]es the run.
    pub(crate) fn execute<W: Work>(
        self,
        work: &W,
        items: &BTreeMap<IdentityId, W::Item>,
        warnings: Vec<String>,
        fleet: FleetFacts,
    ) -> Result<(Report, Exit)> {
        let each = items.iter().map(|(id, item)| (id.clone(), item));
        let total = items.len();
        let items = batches::Items { each, total };
        self.stream(work, items, warnings)?.finish(fleet)
    }

    /// Runs `work` over `items`, taken as they come (a survey streamed: nothing is held but the
    /// batch in flight and the next), in journaled batches; the run then ends with
    /// [`Streamed::finish`], once what it found in the fleet is known.
    pub(crate) fn stream<W: Work, T: Borrow<W::Item> + Send + Sync>(
        self,
        work: &W,
        items: batches::Items<impl Iterator<Item = (IdentityId, T)>>,
        warnings: Vec<String>,
    ) -> Result<Streamed> {
        let meter = self.write.meter(items.total);
        let streamed = self.stream_metered(work, items.each, &meter, warnings);
        meter.finish(streamed.as_ref().is_ok_and(Streamed::stopped));
        streamed
    }

    /// [`Started::stream`] with its progress shown on `meter`, which its caller made and
    /// finishes: a run that judges as it goes ticks it for the identities it passes by too.
    pub(crate) fn stream_metered<W: Work, T: Borrow<W::Item> + Send + Sync>(
        mut self,
        work: &W,
        items: impl Iterator<Item = (IdentityId, T)>,
        meter: &Meter,
        warnings: Vec<String>,
    ) -> Result<Streamed> {
        for w in &warnings {
            eprintln!("rekey: warning: {}", crate::values::Escaped::new(w));
        }
        let root = self.write.root.clone();
        let interrupt = self.write.interrupt.clone();
        let skip_hooks = self.write.settings.hooks.skip;
        let (commit, run_dir) = match &mut self.run {
            Journaled::Run(run) => {
                let dir = run.dir.clone();
                (batches::Commit::Journal(run), Some(dir))
            }
            Journaled::DryRun(_) => (batches::Commit::Nowhere, None),
        };
        let hooking = run_dir
            .as_ref()
            .filter(|_| !skip_hooks)
            .map(|run_dir| batches::Hooking {
                set: &self.write.hooks,
                ctx: hooks::Context {
                    root: &root,
                    fleet: &self.write.fleet,
                    run_id: run_dir.id(),
                    run: run_dir,
                    post_env: Vec::new(),
                },
                next: self.next_call,
            });
        let mut lines = Lines::new(run_dir.as_ref().map(|dir| dir.path()), Vec::new());
        let pool = pool(self.write.settings.jobs)?;
        let root_dir = &self.write.fleet;
        let crew = batches::Crew {
            pool: &pool,
            fleet: root_dir,
            meter,
            interrupt: &interrupt,
        };
        let done = batches::run(work, items, crew, commit, hooking, &mut lines)?;
        self.next_call = done.last_call;
        Ok(Streamed {
            started: self,
            lines,
            stopped: done.stopped,
            warnings,
        })
    }

    /// Ends a run that had nothing to change.
    pub(crate) fn nothing_to_do(self, fleet: FleetFacts) -> Result<(Report, Exit)> {
        let dir = match &self.run {
            Journaled::Run(run) => Some(run.dir.path().to_path_buf()),
            Journaled::DryRun(_) => None,
        };
        let lines = Lines::new(dir.as_deref(), Vec::new());
        self.finish(lines, None, Vec::new(), fleet)
    }

    /// Ends the run: builds its report (once, its identities streamed from `lines`), saves it,
    /// runs the post hooks when something changed, settles the audit log, closes the journal,
    /// prints the report and says how the run ended. Also the whole of a run that found nothing
    /// to do. The report returned holds its identities only when the command shows it
    /// ([`Shown::ByCommand`]).
    pub(crate) fn finish(
        mut self,
        mut lines: Lines,
        stopped: Option<Stop>,
        warnings: Vec<String>,
        fleet: FleetFacts,
    ) -> Result<(Report, Exit)> {
        journal::crash_point("finishing");
        let root = self.write.root.clone();
        let keep_runs = fleet.keep_runs;
        let dry_run = !self.write.effects.writes();
        let header = Header {
            run_id: self.id().to_string(),
            dry_run,
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
        lines.close();
        let aside = match &self.run {
            Journaled::Run(run) => Some(run.dir.path().to_path_buf()),
            Journaled::DryRun(_) => None,
        };
        let mut report = Report::of(
            header,
            lines.tally(),
            Vec::new(),
            lines.read()?,
            aside.as_deref(),
        )
        .context("failed to read back the run's report lines, or what it leaves for a person")?;
        let shown = self.write.settings.shown;
        let mut run = match self.run {
            Journaled::Run(run) => run,
            Journaled::DryRun(_) => {
                // The report the run would write, and nothing after it: no post hook, no report
                // saved, no audit, no metrics, no pruning.
                tell(&report, &lines, stopped.as_ref(), &Ok(()), shown)?;
                let exit = report.exit();
                return Ok((handed(report, &lines, shown)?, exit));
            }
        };
        if report.counts.done > 0 || self.changed_ca {
            let results = post_hooks(&self.write, &mut run, &self.post, &report, &lines)?;
            report.with_post_hooks(results);
        } else {
            drop_post_hooks(&mut run, &self.post);
        }
        // The audit log is settled before the journal ends: a run whose journal ended is never
        // replayed, so lines written after it would be lost for good at a power cut between the
        // two (settling is idempotent: a replay of this run writes only what is missing).
        if report.command == RunCommand::Recover {
            let read = lines
                .read()
                .context("failed to read the run's report lines")?;
            audit::settle(&root, &report, read, self.write.settings.started)?;
        }
        let run_dir = run.dir.clone();
        let saved = run.finish(&report, &lines);
        if saved.is_err() {
            report.not_saved();
        }
        pending::settle(&run_dir)?;
        if let Err(err) = refresh_metrics(&self.write, &report) {
            eprintln!(
                "rekey: warning: {}; the run itself is unaffected",
                crate::values::Escaped::new(&format!("{err:#}"))
            );
        }
        // Retention is work, not output: a reader gone early (`rekey rotate | true`) does not
        // skip it.
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
        tell(&report, &lines, stopped.as_ref(), &saved, shown)?;
        let exit = report.exit();
        Ok((handed(report, &lines, shown)?, exit))
    }
}

/// Runs the post hooks of a run that changed something (journaled when it started), once its
/// report is saved for them to read. A report the filesystem cannot take leaves them pending:
/// the next writer saves the report (replaying the run) and runs them.
fn post_hooks(
    write: &WriteRun,
    run: &mut Run,
    post: &[hooks::HookCall],
    report: &Report,
    lines: &Lines,
) -> Result<Vec<hooks::HookResult>> {
    if post.is_empty() {
        return Ok(Vec::new());
    }
    match history::save_report(&run.dir, report, lines) {
        Err(err) if crate::fsio::caused_by_no_space(&err) => return Ok(Vec::new()),
        saved => saved?,
    }
    journal::crash_point("post_hooks");
    let ctx = hooks::Context {
        root: &write.root,
        fleet: &write.fleet,
        run_id: run.dir.id(),
        run: &run.dir,
        post_env: hooks::post_env(&run.dir.report(), &report.counts),
    };
    let mut journal = pending::HookJournal::new(&mut run.journal);
    let mut results = Vec::new();
    for call in post {
        let result = hooks::run(call, &write.hooks, &ctx, None);
        journal.done(call.call, &result)?;
        results.push(result);
    }
    reap::sweep();
    Ok(results)
}

/// Closes the post hook calls of a run that changed nothing: they have nothing to announce.
/// Best effort: a journal that refuses the record (a full filesystem) leaves them to the rule
/// that a run's post hooks are pending only once it committed something.
fn drop_post_hooks(run: &mut Run, post: &[hooks::HookCall]) {
    for call in post {
        let dropped = journal::Record::HookDropped {
            call: call.call,
            reason: "the run changed nothing".to_string(),
        };
        if run.journal.append(&dropped).is_err() {
            return;
        }
    }
}

/// Rewrites the policy's `metrics_file`, when it names one, with the fleet as the run left it
/// (judged at the run date) and this run as the last one (docs/design.md §4, §5).
fn refresh_metrics(write: &WriteRun, report: &Report) -> Result<()> {
    let (root, as_of) = (write.root(), write.as_of());
    let path = write.policy().policy.metrics_path(root);
    // Checked again as the run started it: a file swapped for a link, or a directory that
    // became a link into the fleet, since then is refused here.
    let Some(target) =
        crate::out::metrics_file(path.as_deref(), root, crate::out::Probe::TryCreate)?
    else {
        return Ok(());
    };
    let families = crate::metrics::Families { x509: true };
    let last_run = report.last_run();
    let policy = Some(write.policy().clone());
    let aside = write.aside();
    crate::survey::read_under(
        root,
        as_of,
        policy,
        None,
        aside.as_deref(),
        |scope, judged| {
            target.write(|w| {
                let hooks = super::pending::counts(root);
                crate::metrics::write(
                    scope,
                    judged,
                    Some(&last_run),
                    hooks,
                    families,
                    &mut &mut *w,
                )
            })
        },
    )?
    .with_context(|| format!("failed to refresh metrics_file {}", target.path().display()))
}

fn pool(jobs: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = jobs {
        builder = builder.num_threads(n);
    }
    builder.build().context("failed to start worker threads")
}
