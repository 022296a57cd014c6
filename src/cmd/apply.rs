//! `rekey apply PLAN`: a plan is a request; the fleet is the authority. The plan is read as a
//! stream and validated whole before anything is written (`plan::ReadPlan`), checked against the
//! fleet (CA, policy, age), and narrowed, identity by identity as the fleet streams past, to what
//! the fleet, judged again at the run date, would rotate anyway (`write::apply_streamed`). A plan
//! can only narrow what rekey would do.
//! `--dry-run --format html` renders the dry run's report as the review page of that exact plan
//! file (`html::review`), its sha256 the report's `plan_file_sha256`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::Destination;
use crate::classify::stamp;
use crate::digest::Digest;
use crate::exit::Exit;
use crate::html;
use crate::plan::{MAX_PLAN_BYTES, ReadPlan, ValidPlan};
use crate::select::Selection;
use crate::survey::Scope;
use crate::write::{self, Outcome, Report, Settings, Shown, Sink, WriteRun};

#[derive(Debug)]
pub struct Options {
    /// The plan file; `None`: standard input.
    pub plan: Option<PathBuf>,
    /// The fleet, when it is mounted elsewhere than the plan's root.
    pub root: Option<PathBuf>,
    /// The run date: new validity starts here.
    pub as_of: DateTime<Utc>,
    /// Which of the plan's identities (all, unless `--node`/`--service` name some).
    pub selection: Selection,
    /// Also rotate what the plan says `rotate` but the fleet would keep.
    pub force: bool,
    pub write: Settings,
    /// `--dry-run --format html`: the review page of the plan file, made from the dry run's
    /// report instead of printing it.
    pub review: Option<Review>,
}

/// Where the review page of the plan file goes.
#[derive(Debug)]
pub struct Review {
    /// `None`: stdout.
    pub output: Option<PathBuf>,
}

pub(crate) fn apply(o: &Options) -> Result<Exit> {
    let (shown, plan) = match &o.plan {
        Some(path) => (path.display().to_string(), read_plan_file(path)?),
        None => {
            let plan = ReadPlan::read(std::io::stdin().lock()).context("bad plan (stdin)")?;
            ("(stdin)".to_string(), plan)
        }
    };
    let header = &plan.header;
    let root = o.root.as_deref().unwrap_or(&header.root);
    // The review page is only ever a dry run's: this command makes it so, whatever it was given.
    if let (Some(plan), Some(Review { output: Some(page) })) = (&o.plan, &o.review)
        && same_file(plan, page)
    {
        bail!(
            "-o {} is the plan file itself: its review page would replace what it reviews; \
             write the page elsewhere",
            page.display()
        );
    }
    let (settings, destination) = match &o.review {
        Some(review) => (
            Settings {
                sink: Sink::Nowhere,
                shown: Shown::ByCommand,
                ..o.write.clone()
            },
            Some(Destination::check(review.output.as_deref(), root)?),
        ),
        None => (o.write.clone(), None),
    };
    let run = WriteRun::begin(root, o.as_of, &settings)?;
    let applying = write::Applying {
        plan: &plan,
        selection: &o.selection,
        force: o.force,
        check: |scope: &Scope| check_against_fleet(header, scope, Path::new(&shown)),
        shown: |scope: &Scope, report: &Report| {
            let Some(destination) = destination else {
                return Ok(());
            };
            let review = html::review::Review {
                plan_file: &shown,
                plan: header,
                scope,
                run: decided(report, &plan.sha256),
            };
            destination.deliver(|w| html::review::write(&review, &mut &mut *w))
        },
    };
    write::apply_streamed(run, applying)
}

/// Whether `a` and `b` name one file that exists (device and inode, links and `..` followed).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// The dry run's report in the review page's terms: its counts, the identities it would rotate
/// and those it refuses, as the report says them.
fn decided<'a>(report: &'a Report, digest: &'a Digest) -> html::review::Decided<'a> {
    let mut rotating = Vec::new();
    let mut refused = Vec::new();
    for line in &report.identities {
        let what = match line.outcome {
            Outcome::Done => {
                rotating.push(html::review::Rotates {
                    dir: &line.dir,
                    files: line.files.iter().map(|f| f.name.as_str()).collect(),
                    cert_until: line.cert.as_ref().map(|c| c.new_not_after.as_str()),
                    token_until: line.token.as_ref().map(|t| t.new_exp.as_str()),
                    note: &line.reason,
                });
                continue;
            }
            Outcome::Skipped => "skipped",
            Outcome::Failed => "would fail",
        };
        refused.push(html::review::Left {
            dir: &line.dir,
            what,
            reason: &line.reason,
        });
    }
    let attention = report
        .needs_attention
        .iter()
        .map(|a| html::review::Left {
            dir: &a.dir,
            what: a.state.as_str(),
            reason: &a.reason,
        })
        .collect();
    html::review::Decided {
        as_of: report.as_of,
        // The report's own digest: the one the run prints and records.
        plan_file_sha256: report.plan_file_sha256.as_ref().unwrap_or(digest),
        done: report.counts.done,
        skipped: report.counts.skipped,
        failed: report.counts.failed,
        credentials: report.counts.credentials,
        rotating,
        refused,
        attention,
        warnings: &report.warnings,
    }
}

/// The plan file at `path`, read as a stream ([`ReadPlan`]); refused before it is read when it
/// is larger than [`MAX_PLAN_BYTES`].
fn read_plan_file(path: &Path) -> Result<ReadPlan> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("failed to read plan {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("failed to read plan {}", path.display()))?;
    if meta.is_file() && meta.len() > MAX_PLAN_BYTES {
        bail!(
            "bad plan {}: it is {} bytes, larger than a plan can be ({MAX_PLAN_BYTES} bytes, 64 \
             MiB); it was not read",
            path.display(),
            meta.len()
        );
    }
    ReadPlan::read(file).with_context(|| format!("bad plan {}", path.display()))
}

/// Refuses a plan made for another CA, under another policy, edited in its policy numbers, made
/// after the run date, or older than the policy allows.
fn check_against_fleet(plan: &ValidPlan, fleet: &Scope, path: &Path) -> Result<()> {
    let shown = path.display();
    if plan.ca_sha256 != fleet.ca.sha256 {
        bail!("the plan {shown} was made for another CA (ca_sha256 differs): make a new plan");
    }
    let stage = fleet.stage();
    if plan.ca_stage != stage {
        bail!(
            "the plan {shown} was made in CA rotation stage {}, but the fleet's CA rotation is \
             {} now: make a new plan",
            plan.ca_stage.name(),
            stage.name()
        );
    }
    let other = fleet.rotation.as_ref().map(|r| r.other.sha256);
    if plan.ca_other_sha256 != other {
        bail!(
            "the plan {shown} was made under another pair of CAs (ca_other_sha256 differs from \
             the CA trusted beside ca/ca.crt): make a new plan"
        );
    }
    let policy = &fleet.policy;
    if plan.policy_sha256 != policy.digest() {
        bail!(
            "the policy changed since the plan {shown} was made (policy_sha256 differs): make a \
             new plan"
        );
    }
    if plan.validity_days != policy.validity_days || plan.keys != policy.keys {
        bail!(
            "the plan {shown} says validity_days = {} and keys = \"{}\", but the policy it was \
             made under says {} and \"{}\": the plan was edited; numbers in a plan are never \
             used to issue; make a new plan",
            plan.validity_days,
            plan.keys.as_str(),
            policy.validity_days,
            policy.keys.as_str()
        );
    }
    let age = fleet.as_of - plan.as_of;
    if age < chrono::TimeDelta::zero() {
        bail!(
            "the plan {shown} was made as of {}, after this run's date {}: a plan cannot judge \
             a fleet it has not seen; make a new plan",
            stamp(plan.as_of),
            stamp(fleet.as_of)
        );
    }
    if age > policy.max_plan_age() {
        bail!(
            "the plan {shown} is {} old (made as of {}, run date {}), older than \
             max_plan_age_hours = {}: make a new plan",
            crate::count::count(age.num_hours(), "hour", "hours"),
            stamp(plan.as_of),
            stamp(fleet.as_of),
            policy.max_plan_age_hours
        );
    }
    Ok(())
}
