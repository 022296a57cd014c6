//! `rekey apply` and `rekey rotate`: turn a plan's `rotate` actions into a journaled run, and the
//! shared tail of every rotating command (`execute`): lock held, CA signer loaded, batches run,
//! report written, summary printed.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};

use crate::apply::{self, Planned, Rotation, Target};
use crate::ca::{self, Ca};
use crate::classify::{Action, stamp};
use crate::cli::{Progress, StatusFormat};
use crate::commands::emit;
use crate::exit::Exit;
use crate::names;
use crate::plan::{self, Entry, Plan, PlanIdentity};
use crate::policy::{KeyMode, Policy};
use crate::report;
use crate::runs::{self, REPORT_VERSION, Report, Run};
use crate::signer;
use crate::survey::{Attention, Survey};

/// How a writing command runs and reports.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub jobs: Option<usize>,
    pub progress: Progress,
    pub format: StatusFormat,
    /// Wall clock at start: names the run, whatever `--as-of` says.
    pub started: DateTime<Utc>,
}

/// A rotating run to execute: what, under which terms, and what to note in its report.
pub struct Job<'a> {
    pub root: &'a Path,
    pub ca: &'a Ca,
    pub keys: KeyMode,
    pub validity_days: u32,
    pub as_of: DateTime<Utc>,
    pub command: &'a str,
    pub targets: Vec<Target>,
    /// Inspect every identity again before writing (a plan read from a file).
    pub verify_again: bool,
    pub reason: Option<String>,
    pub operator: Option<String>,
}

/// Executes a job; returns its report (None when there was nothing to do) and exit code.
pub fn execute(job: Job<'_>, opts: &WriteOptions) -> Result<(Option<Report>, Exit)> {
    if job.targets.is_empty() {
        eprintln!("rekey: nothing to rotate");
        return Ok((None, Exit::Ok));
    }
    let as_of = chrono::SubsecRound::trunc_subsecs(job.as_of, 0);
    let signer = signer::load(job.root, job.ca, as_of)?;
    let not_after = (as_of + TimeDelta::days(i64::from(job.validity_days))).min(job.ca.not_after);
    let rotation = Rotation {
        root: job.root,
        ca: job.ca,
        signer: &signer,
        keys: job.keys,
        not_before: as_of,
        not_after,
        verify_again: job.verify_again,
    };
    let mut run = Run::start(job.root, opts.started, job.command, as_of)?;
    let progress = apply::show_progress(
        opts.progress,
        std::io::stderr().is_terminal(),
        opts.format == StatusFormat::Table,
    );
    let outcome = pool(opts.jobs)?
        .install(|| apply::run_batches(&rotation, &job.targets, &mut run, job.root, progress))?;
    let report = Report {
        version: REPORT_VERSION,
        run_id: run.id.clone(),
        command: job.command.to_string(),
        started: stamp(opts.started),
        as_of: stamp(as_of),
        root: job.root.to_string_lossy().into_owned(),
        rolls_back: None,
        reason: job.reason,
        operator: job.operator,
        recovered_by_replay: false,
        stopped: outcome.stopped,
        counts: outcome.counts,
        identities: outcome.identities,
    };
    let exit = conclude(run, &report, opts.format)?;
    Ok((Some(report), exit))
}

/// Ends a run: saves its report and closes its journal, prints the summary, and picks the exit
/// code. A run stopped short (the filesystem filled up), or whose report could not be saved,
/// says so on stderr; it exits 1 when it changed nothing, 3 when it changed some.
pub fn conclude(run: Run, report: &Report, format: StatusFormat) -> Result<Exit> {
    let saved = run.finish(report);
    print_report(report, format)?;
    let counts = report.counts;
    if let Some(why) = &report.stopped {
        // A plan no longer matches the identities done: `apply` needs a fresh one.
        let again = match report.command.as_str() {
            "apply" => "make a new plan and apply it".to_string(),
            command => format!("run `rekey {command}` again"),
        };
        eprintln!(
            "rekey: error: {why}; stopped after {} of {} identities, the rest are unchanged; \
             free some space and {again}",
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
    let cut_short = report.stopped.is_some() || saved.is_err();
    Ok(if cut_short && counts.done == 0 {
        Exit::Fatal
    } else if cut_short || counts.failed + counts.skipped > 0 {
        Exit::WorkDue
    } else {
        Exit::Ok
    })
}

pub fn print_report(report: &Report, format: StatusFormat) -> Result<()> {
    match format {
        StatusFormat::Table => emit(&report::run_summary(report)),
        StatusFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(report).expect("a report serializes")
        )),
    }
}

pub fn pool(jobs: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = jobs {
        builder = builder.num_threads(n);
    }
    builder.build().context("failed to start worker threads")
}

/// Takes the writer lock and finishes or undoes whatever an interrupted run left.
pub fn begin_writing(root: &Path) -> Result<runs::Lock> {
    let lock = runs::lock(root)?;
    for line in runs::replay_interrupted(root)? {
        eprintln!("{line}");
    }
    Ok(lock)
}

/// The identities of `plan` with `action` on a credential, with the planned digests.
pub fn targets(
    identities: impl IntoIterator<Item = PlanIdentity>,
    action: Action,
) -> Result<Vec<Target>> {
    let planned = |e: &Option<Entry>, node: &str, service: &str| -> Result<Option<Planned>> {
        let Some(e) = e.as_ref() else {
            return Ok(None);
        };
        let rotate = e.action == action;
        let Some(hex_text) = e.sha256.as_deref() else {
            return if rotate {
                bail!("bad plan: {node}/{service} has no sha256")
            } else {
                Ok(None)
            };
        };
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut sha256)
            .with_context(|| format!("bad plan: {node}/{service} has a bad sha256"))?;
        Ok(Some(Planned { sha256, rotate }))
    };
    let mut out = Vec::new();
    for i in identities {
        if !names::is_valid(&i.node) || !names::is_valid(&i.service) {
            bail!(
                "bad plan: {:?}/{:?} is not a valid node/service name",
                i.node,
                i.service
            );
        }
        let cert = planned(&i.cert, &i.node, &i.service)?;
        let token = planned(&i.token, &i.node, &i.service)?;
        if cert.iter().chain(token.iter()).any(|p| p.rotate) {
            out.push(Target {
                node: i.node.clone(),
                service: i.service.clone(),
                cert,
                token,
            });
        }
    }
    Ok(out)
}

/// `rekey apply PLAN`.
pub fn apply(plan_path: &Path, as_of: DateTime<Utc>, opts: &WriteOptions) -> Result<Exit> {
    let text = std::fs::read_to_string(plan_path)
        .with_context(|| format!("failed to read plan {}", plan_path.display()))?;
    let plan = Plan::parse(&text).with_context(|| format!("bad plan {}", plan_path.display()))?;
    let targets = targets(plan.identity.iter().cloned(), Action::Rotate)
        .with_context(|| format!("in {}", plan_path.display()))?;
    let root = Path::new(&plan.root);
    if !root.is_absolute() {
        bail!(
            "bad plan {}: root {:?} is not an absolute path",
            plan_path.display(),
            plan.root
        );
    }
    let _lock = begin_writing(root)?;
    let ca = ca::load(root)?;
    if ca.sha256 != plan.ca_sha256 {
        bail!(
            "the plan {} was made for another CA (ca_sha256 differs): make a new plan",
            plan_path.display()
        );
    }
    let policy = Policy::load(root)?;
    let job = Job {
        root,
        ca: &ca,
        keys: policy.keys,
        validity_days: plan.validity_days,
        as_of,
        command: "apply",
        targets,
        verify_again: true,
        reason: None,
        operator: None,
    };
    Ok(execute(job, opts)?.1)
}

/// `rekey rotate`: plan and apply in one run.
pub fn rotate(
    root: &Path,
    as_of: DateTime<Utc>,
    dry_run: bool,
    opts: &WriteOptions,
) -> Result<Exit> {
    if dry_run {
        let survey = Survey::take(root, as_of)?;
        let format = match opts.format {
            StatusFormat::Table => plan::Format::Toml,
            StatusFormat::Json => plan::Format::Json,
        };
        crate::commands::emit_with(|w| plan::write(&survey, format, w))?;
        eprint!("{}", report::plan_summary(&survey));
        return Ok(survey.attention(None).into());
    }
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))?;
    let _lock = begin_writing(&root)?;
    let survey = Survey::take(&root, as_of)?;
    eprint!("{}", report::plan_summary(&survey));
    let job = Job {
        root: &root,
        ca: &survey.ca,
        keys: survey.policy.keys,
        validity_days: survey.policy.validity_days,
        as_of,
        command: "rotate",
        targets: targets(plan::identities(&survey), Action::Rotate)?,
        verify_again: false,
        reason: None,
        operator: None,
    };
    let (_, exit) = execute(job, opts)?;
    // Rotations due were this run's work; what is left for a person is recover and problems.
    let left = match survey.attention(None) {
        Attention::RecoverOrProblem => Exit::Attention,
        Attention::WorkDue | Attention::None => Exit::Ok,
    };
    Ok(worse(exit, left))
}

/// The more serious of two exit codes (4 over 3 over 0).
pub fn worse(a: Exit, b: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Ok => 0,
        Exit::WorkDue => 1,
        Exit::Attention => 2,
        Exit::Usage => 3,
        Exit::Fatal => 4,
    };
    if rank(a) >= rank(b) { a } else { b }
}
