//! `rekey apply PLAN`: a plan is a request; the fleet is the authority. The plan is validated
//! whole, checked against the fleet (CA, policy, age), and narrowed to what the fleet, judged
//! again at the run date, would rotate anyway. A plan can only narrow what rekey would do.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::classify::stamp;
use crate::exit::Exit;
use crate::names::IdentityId;
use crate::plan::ValidPlan;
use crate::select::Selection;
use crate::survey::Survey;
use crate::write::{self, Notes, Rotating, RunCommand, Settings, WriteRun};

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
}

/// The largest plan `apply` reads: ten times a plan of 10^5 identities. A larger one is refused
/// before it is read (stdin: after this many bytes and one more).
pub(crate) const MAX_PLAN_BYTES: u64 = 64 << 20;

pub(crate) fn apply(o: &Options) -> Result<Exit> {
    let (shown, text) = match &o.plan {
        Some(path) => (path.display().to_string(), read_plan_file(path)?),
        None => {
            let text = read_capped(std::io::stdin().lock(), "(stdin)")?;
            ("(stdin)".to_string(), text)
        }
    };
    if text.trim().is_empty() {
        bail!("bad plan {shown}: it is empty");
    }
    let plan = ValidPlan::parse(&text).with_context(|| format!("bad plan {shown}"))?;
    let root = o.root.as_deref().unwrap_or(&plan.root);
    let run = WriteRun::begin(root, o.as_of, &o.write)?;
    let mut survey = run.survey()?;
    check_against_fleet(&plan, &survey, Path::new(&shown))?;
    o.selection.narrow(&mut survey)?;
    let mut narrowed = write::narrow(&plan, &survey, o.force);
    let selected = |id: &IdentityId| o.selection.matches(id.node(), id.service());
    narrowed.targets.retain(|id, _| selected(id));
    narrowed.refused.retain(|(id, _)| selected(id));
    let asked = Rotating {
        command: RunCommand::Apply,
        targets: narrowed.targets,
        refused: narrowed.refused,
        notes: Notes {
            plan_file_sha256: Some(crate::digest::Digest::of(text.as_bytes())),
            ..Notes::default()
        },
    };
    write::rotate(run, &survey, asked, |_| Ok(()))
}

/// The plan file at `path`, refused before it is read when it is larger than [`MAX_PLAN_BYTES`].
fn read_plan_file(path: &Path) -> Result<String> {
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
    read_capped(file, &path.display().to_string())
}

/// Reads at most [`MAX_PLAN_BYTES`] and one byte more from `from` (a pipe, or a file that grew),
/// refusing what is larger or not UTF-8.
fn read_capped(from: impl Read, shown: &str) -> Result<String> {
    let mut bytes = Vec::new();
    from.take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read plan {shown}"))?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        bail!(
            "bad plan {shown}: it is larger than a plan can be ({MAX_PLAN_BYTES} bytes, 64 MiB); \
             the rest was not read"
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("bad plan {shown}: it is not UTF-8 text"))
}

/// Refuses a plan made for another CA, under another policy, edited in its policy numbers, made
/// after the run date, or older than the policy allows.
fn check_against_fleet(plan: &ValidPlan, fleet: &Survey, path: &Path) -> Result<()> {
    let shown = path.display();
    if plan.ca_sha256 != fleet.scope.ca.sha256 {
        bail!("the plan {shown} was made for another CA (ca_sha256 differs): make a new plan");
    }
    let policy = &fleet.scope.policy;
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
    let age = fleet.scope.as_of - plan.as_of;
    if age < chrono::TimeDelta::zero() {
        bail!(
            "the plan {shown} was made as of {}, after this run's date {}: a plan cannot judge \
             a fleet it has not seen; make a new plan",
            stamp(plan.as_of),
            stamp(fleet.scope.as_of)
        );
    }
    if age > policy.max_plan_age() {
        bail!(
            "the plan {shown} is {} old (made as of {}, run date {}), older than \
             max_plan_age_hours = {}: make a new plan",
            crate::count::count(age.num_hours(), "hour", "hours"),
            stamp(plan.as_of),
            stamp(fleet.scope.as_of),
            policy.max_plan_age_hours
        );
    }
    Ok(())
}
