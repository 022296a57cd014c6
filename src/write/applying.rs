//! What `apply` does, in memory bounded by the batch in flight: the plan (read and judged whole
//! before, `plan::ReadPlan`) and the fleet, each read as a stream in (node, service) order and met
//! by merge (`narrow::Merge`), twice. A first pass checks the plan against the fleet (CA,
//! policy, stage: before anything is written) and counts; a second starts the run and hands the
//! batches each identity the plan asks for as the survey judges it: a target, or a refusal that
//! the batch reports skipped where a held run listed it. What the run rotates is what the second
//! pass judges (the fleet as it is when each identity is read, as with any run).

use anyhow::Result;

use super::batches::Items;
use super::journal::{self, Staged};
use super::narrow::{self, Merge};
use super::record::run_report::{Notes, Report, RunCommand};
use super::rotating::{Signing, end_facts};
use super::rotation::{Rotation, Target};
use super::run::WriteRun;
use super::work::{NotStaged, Work};
use crate::exit::Exit;
use crate::names::IdentityId;
use crate::plan::ReadPlan;
use crate::select::Selection;
use crate::survey::{Filter, Grain, Judged, Scope};

/// How `apply` runs a plan: what it asks, and what it does with the fleet and the report.
pub(crate) struct Applying<'a, C, S> {
    pub(crate) plan: &'a ReadPlan,
    pub(crate) selection: &'a Selection,
    pub(crate) force: bool,
    /// Refuses a plan made for another fleet (CA, policy, stage, age), before anything is
    /// written.
    pub(crate) check: C,
    /// Takes the fleet's scope and the report once the run is over (the review page).
    pub(crate) shown: S,
}

/// Runs the plan (see the module's comment) and returns the run's report (a dry run's: the one
/// the run would write) and its exit code.
pub(crate) fn apply_streamed<C, S>(write: WriteRun, a: Applying<'_, C, S>) -> Result<Exit>
where
    C: Fn(&Scope) -> Result<()>,
    S: FnOnce(&Scope, &Report) -> Result<()>,
{
    let root = write.root().to_path_buf();
    let (as_of, policy) = (write.as_of(), Some(write.policy().clone()));
    let filter = (!a.selection.all).then(|| Filter {
        nodes: a.selection.nodes.clone(),
        services: a.selection.services.clone(),
        states: Vec::new(),
    });
    let narrowed = filter.as_ref().map(|f| (f, Grain::Identity));
    let aside = write.aside();
    let counted = crate::survey::read_under(
        &root,
        as_of,
        policy.clone(),
        narrowed,
        aside.as_deref(),
        |scope, judged| {
            (a.check)(scope)?;
            let mut failed = None;
            let (mut items, mut targets) = (0usize, 0usize);
            for (_, asked) in asked(a.plan, judged, a.selection, a.force, &mut failed)? {
                items += 1;
                targets += usize::from(asked.is_ok());
            }
            if let Some(err) = failed {
                return Err(err);
            }
            let end = judged.end();
            if filter.is_some() && end.totals.identities_total() == 0 {
                return Err(a.selection.selects_nothing());
            }
            Ok((items, targets))
        },
    )?;
    let (items, targets) = counted?;
    let notes = Notes {
        plan_file_sha256: Some(a.plan.sha256),
        ..Notes::default()
    };
    crate::survey::read_under(
        &root,
        as_of,
        policy,
        narrowed,
        aside.as_deref(),
        |scope, judged| {
            (a.check)(scope)?;
            // The CA key is loaded only for a run with something to rotate, before anything is
            // written or audited.
            let signing = match targets {
                0 => None,
                _ => Some(Signing::load(&write, scope)?),
            };
            let work = Asked {
                rotation: signing.as_ref().map(|s| s.rotation(scope, as_of)),
            };
            let warnings = signing.as_ref().map(|s| s.warnings.clone());
            let started = write.start(RunCommand::Apply, notes)?;
            if signing.is_some() {
                journal::crash_point("surveyed");
            }
            let mut failed = None;
            let each = asked(a.plan, judged, a.selection, a.force, &mut failed)?;
            let items = Items { each, total: items };
            let warnings = warnings.unwrap_or_default();
            let streamed = started.stream(&work, items, warnings)?;
            if let Some(err) = failed {
                return Err(err);
            }
            // What is left for a person as this pass, the one that acted, found the fleet.
            let (report, exit) = streamed.finish(end_facts(scope, judged.end()))?;
            (a.shown)(scope, &report)?;
            Ok(exit)
        },
    )?
}

/// What the plan asks of each identity it names (of the selection), judged against the fleet's
/// identities as `judged` gives them: a target, or a refusal with why. An entry that cannot be
/// read back ends the identities, its error in `failed`.
fn asked<'a>(
    plan: &ReadPlan,
    judged: &'a mut Judged<'_>,
    selection: &'a Selection,
    force: bool,
    failed: &'a mut Option<anyhow::Error>,
) -> Result<impl Iterator<Item = (IdentityId, Result<Target, String>)> + 'a> {
    let entries = plan
        .entries()?
        .map_while(move |entry| entry.map_err(|err| *failed = Some(err)).ok())
        .filter(move |(id, _)| selection.matches(id.node(), id.service()));
    let merged = Merge {
        plan: entries,
        fleet: judged.by_ref().peekable(),
    };
    Ok(merged.filter_map(move |(id, planned, identity)| {
        let asked = narrow::narrow(&planned, identity.as_ref(), force)?;
        Some((id, asked))
    }))
}

/// A plan's run, identity by identity: the rotation of each target, and each identity the fleet
/// refuses reported skipped, with why.
struct Asked<'a> {
    /// `None`: the first pass found nothing to rotate, and no CA key was loaded.
    rotation: Option<Rotation<'a>>,
}

impl Work for Asked<'_> {
    type Item = Result<Target, String>;

    fn stage(&self, id: &IdentityId, asked: &Self::Item) -> Result<Staged, NotStaged> {
        match (asked, &self.rotation) {
            (Err(why), _) => Err(NotStaged::Skipped(why.clone())),
            (Ok(target), Some(rotation)) => rotation.stage(id, target),
            (Ok(_), None) => Err(NotStaged::Skipped(
                "judged due only as the run started (the fleet changed since it was first read): \
                 left alone; make a new plan"
                    .to_string(),
            )),
        }
    }
}
