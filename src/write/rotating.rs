//! A rotating run (`rotate`, `apply`, `recover`): the CA key loaded before anything is written,
//! the new expiry, the run started, the batches of [`Rotation`] run.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::record::run_report::{Attention, FleetFacts, NeedsPerson, Notes, Report, RunCommand};
use super::rotation::{Rotation, Target};
use super::run::WriteRun;
use super::started::Started;
use crate::aside::Aside;
use crate::classify::Action;
use crate::exit::Exit;
use crate::names::IdentityId;
use crate::survey::{Stuck, Survey};
use chrono::{DateTime, Utc};

/// What a rotating command asks of its run.
pub(crate) struct Rotating {
    pub(crate) command: RunCommand,
    /// The identities to rotate, each with what it was judged.
    pub(crate) targets: BTreeMap<IdentityId, Target>,
    pub(crate) notes: Notes,
}

/// Rotates `targets` in one journaled run: loads the CA key (before anything is written or
/// audited), starts the run, lets `before` record what it must before the first batch (the
/// recovery audit), then runs the batches. A run with nothing to rotate still starts, and reports
/// so. Returns the run's report (a dry run's: the one the run would write) and its exit code.
pub(crate) fn run(
    write: WriteRun,
    survey: &Survey,
    asked: Rotating,
    before: impl FnOnce(&Started) -> anyhow::Result<()>,
) -> anyhow::Result<(Report, Exit)> {
    let Rotating {
        command,
        targets,
        notes,
    } = asked;
    let fleet = facts(survey);
    // `before` records (the recovery audit): a dry run records nothing.
    let dry = write.dry();
    if targets.is_empty() {
        let started = write.start(command, notes)?;
        if !dry {
            before(&started)?;
        }
        return started.nothing_to_do(fleet);
    }
    let signing = Signing::load(&write, &survey.scope)?;
    let rotation = signing.rotation(&survey.scope, write.as_of());
    let warnings = signing.warnings.clone();
    let started = write.start(command, notes)?;
    if !dry {
        before(&started)?;
    }
    super::journal::crash_point("surveyed");
    started.execute(&rotation, &targets, warnings, fleet)
}

/// What `rotate` rotates: every identity `survey` judges `rotate` (with `force`, also the
/// credentials it would keep).
pub(crate) fn due_targets(survey: &Survey, force: bool) -> BTreeMap<IdentityId, Target> {
    survey
        .identities
        .iter()
        .filter_map(|i| {
            let target = Target::judged(i, Action::Rotate, force)?;
            Some((i.id.clone(), target))
        })
        .collect()
}

/// What `rotate` does: rotates `targets` ([`due_targets`]).
pub(crate) fn rotate_due(
    write: WriteRun,
    survey: &Survey,
    targets: BTreeMap<IdentityId, Target>,
) -> anyhow::Result<Exit> {
    let asked = Rotating {
        command: RunCommand::Rotate,
        targets,
        notes: Notes::default(),
    };
    Ok(run(write, survey, asked, |_| Ok(()))?.1)
}

/// What `rotate` does, the fleet judged once and held never: each identity judged `rotate`
/// (with `force`, also the credentials it would keep) goes to the batches as the survey judges
/// it, and memory holds the batch in flight and the next, whatever the fleet's size. The run
/// starts at the first identity to rotate (the CA key loaded first): a fleet with none ends as
/// a run with nothing to do, and a selection of nothing is refused, before anything is written.
/// The plan summary (stderr) is printed once the fleet has been read, before the report; the
/// progress is counted against the identities the selection lists.
pub(crate) fn rotate_streamed(
    write: WriteRun,
    selection: &crate::select::Selection,
    force: bool,
) -> anyhow::Result<Exit> {
    let root = write.root().to_path_buf();
    let (as_of, policy) = (write.as_of(), Some(write.policy().clone()));
    let filter = (!selection.all).then(|| crate::survey::Filter {
        nodes: selection.nodes.clone(),
        services: selection.services.clone(),
        states: Vec::new(),
    });
    let narrowed = filter.as_ref().map(|f| (f, crate::survey::Grain::Identity));
    let meter = write.meter(crate::survey::listed(&root, filter.as_ref()));
    let aside = write.aside();
    crate::survey::read_under(
        &root,
        as_of,
        policy,
        narrowed,
        aside.as_deref(),
        |scope, judged| {
            let forced = std::cell::Cell::new(0usize);
            let mut targets = judged.by_ref().filter_map(|identity| {
                let Some(target) = Target::judged(&identity, Action::Rotate, force) else {
                    meter.tick();
                    return None;
                };
                let kept = target
                    .credentials()
                    .filter(|e| e.rotate && e.judged == Action::Keep);
                forced.set(forced.get() + kept.count());
                Some((identity.id, target))
            });
            let Some(first) = targets.next() else {
                drop(targets);
                meter.clear();
                let end = judged.end();
                if filter.is_some() && end.totals.identities_total() == 0 {
                    return Err(selection.selects_nothing());
                }
                crate::report::show_plan_summary(scope, end, forced.get());
                let started = write.start(RunCommand::Rotate, Notes::default())?;
                return Ok(started.nothing_to_do(end_facts(scope, end))?.1);
            };
            let signing = Signing::load(&write, scope)?;
            let rotation = signing.rotation(scope, as_of);
            let warnings = signing.warnings.clone();
            let started = write.start(RunCommand::Rotate, Notes::default())?;
            super::journal::crash_point("surveyed");
            let each = std::iter::once(first).chain(targets);
            let streamed = started.stream_metered(&rotation, each, &meter, warnings);
            meter.finish(
                streamed
                    .as_ref()
                    .is_ok_and(super::started::Streamed::stopped),
            );
            let streamed = streamed?;
            let end = judged.end();
            crate::report::show_plan_summary(scope, end, forced.get());
            Ok(streamed.finish(end_facts(scope, end))?.1)
        },
    )?
}

/// What a rotating run over a streamed fleet is told by its first pass (which counted, and
/// checked what the command was asked).
pub(crate) struct Counted {
    pub(crate) command: RunCommand,
    pub(crate) notes: Notes,
    /// How many identities the second pass hands to the batches.
    pub(crate) total: usize,
}

/// The second pass of a rotating run over a fleet streamed (`recover`'s): loads the CA key
/// (before anything is written or audited), starts the run, lets `before` record what it must
/// before the first batch (the recovery audit; a dry run records nothing), then hands the
/// batches each identity `pick` makes of the survey, as the survey judges it, holding only the
/// batch in flight and the next, until `pick` has none (the identities after it are not
/// attempted). An identity `pick` refuses (`Err(why)`) is reported skipped, with why. What is
/// left for a person is the second pass's (what the run found as it acted), less what it did.
pub(crate) fn run_streamed(
    write: WriteRun,
    counted: Counted,
    mut pick: impl FnMut(&mut crate::survey::Judged<'_>) -> Option<(IdentityId, Result<Target, String>)>,
    before: impl FnOnce(&Started) -> anyhow::Result<()>,
) -> anyhow::Result<(Report, Exit)> {
    let Counted {
        command,
        notes,
        total,
    } = counted;
    let root = write.root().to_path_buf();
    let (as_of, policy) = (write.as_of(), Some(write.policy().clone()));
    let aside = write.aside();
    crate::survey::read_under(
        &root,
        as_of,
        policy,
        None,
        aside.as_deref(),
        |scope, judged| {
            let signing = Signing::load(&write, scope)?;
            let rotation = signing.rotation(scope, as_of);
            let warnings = signing.warnings.clone();
            let dry = write.dry();
            let started = write.start(command, notes)?;
            if !dry {
                before(&started)?;
            }
            super::journal::crash_point("surveyed");
            let items = super::batches::Items {
                each: std::iter::from_fn(|| pick(judged)),
                total,
            };
            let work = super::work::OrSkipped(&rotation);
            let streamed = started.stream(&work, items, warnings)?;
            streamed.finish(end_facts(scope, judged.end()))
        },
    )?
}

/// What signing at the run date needs, loaded before anything is written or audited: the CA
/// key, the expiry the plan promised (one rule, the classifier's), the warning when that is
/// already past, and a second handle on the fleet root.
pub(super) struct Signing {
    signer: crate::signer::CaSigner,
    not_after: DateTime<Utc>,
    pub(super) warnings: Vec<String>,
    root_dir: crate::fsio::RootDir,
}

impl Signing {
    pub(super) fn load(write: &WriteRun, scope: &crate::survey::Scope) -> anyhow::Result<Signing> {
        let as_of = write.as_of();
        let signer = crate::signer::load(write.root(), &scope.ca, as_of)?;
        let not_after = crate::classify::Context {
            policy: &scope.policy,
            ca_not_after: scope.ca.not_after,
            now: as_of,
        }
        .new_not_after();
        let warnings = expired_on_arrival(not_after, write.settings.started)
            .into_iter()
            .collect();
        let root_dir = write
            .fleet()
            .try_clone()
            .context("failed to open the fleet root again")?;
        Ok(Signing {
            signer,
            not_after,
            warnings,
            root_dir,
        })
    }

    /// The rotation of each identity, signed at `as_of` under `scope`'s CA and policy.
    pub(super) fn rotation<'a>(
        &'a self,
        scope: &'a crate::survey::Scope,
        as_of: DateTime<Utc>,
    ) -> Rotation<'a> {
        Rotation {
            fleet: &self.root_dir,
            ca: &scope.ca,
            signer: &self.signer,
            keys: scope.policy.keys,
            not_before: as_of,
            not_after: self.not_after,
        }
    }
}

/// [`facts`] of a fleet streamed: what is left for a person, from what the survey counted
/// (and set aside).
pub(crate) fn end_facts(scope: &crate::survey::Scope, end: &crate::survey::End) -> FleetFacts {
    left_for_a_person(scope, end.people.share(), &end.issues)
}

/// The policy in force and what is left for a person: identities that need `recover` and
/// problems, with their own reasons (for `rotate`, they make the exit code 4 if the run itself
/// went well).
fn facts(survey: &Survey) -> FleetFacts {
    let people = survey
        .identities
        .iter()
        .filter_map(|i| {
            let (tag, reasons) = i.needs_person()?;
            Some(crate::survey::Person {
                id: i.id.clone(),
                tag,
                reasons,
                state: i.state(),
                action: i.action(),
            })
        })
        .collect();
    left_for_a_person(&survey.scope, Aside::held(people), &survey.issues)
}

/// The facts of a fleet judged under `scope`: the identities left for a person, then the
/// fleet issues that are problems, and the policy in force.
fn left_for_a_person(
    scope: &crate::survey::Scope,
    people: Aside<crate::survey::Person>,
    issues: &[crate::scan::Issue],
) -> FleetFacts {
    let issues = issues.iter().filter(|i| i.is_problem).map(|i| NeedsPerson {
        dir: i.path.clone(),
        state: Stuck::Problem,
        reason: i.message.clone(),
        fleet_issue: true,
    });
    FleetFacts {
        policy_sha256: Some(scope.policy.digest()),
        needs_attention: Some(Attention::new(people, issues.collect())),
        keep_runs: Some(scope.policy.keep_runs as usize),
    }
}

/// The warning for credentials that expire before the system clock reads now.
pub(crate) fn expired_on_arrival(not_after: DateTime<Utc>, clock: DateTime<Utc>) -> Option<String> {
    (not_after <= clock).then(|| {
        format!(
            "the run date is so far back that what this run issues expired at {}, before the \
             system clock's now ({}): services cannot use it",
            crate::classify::stamp(not_after),
            crate::classify::stamp(clock),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn credentials_expired_on_arrival_are_named() {
        let clock: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        assert!(expired_on_arrival(clock + TimeDelta::seconds(1), clock).is_none());
        assert!(expired_on_arrival(clock, clock).is_some());
        assert!(expired_on_arrival(clock - TimeDelta::days(1), clock).is_some());
    }
}
