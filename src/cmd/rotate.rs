//! `rekey rotate`: plan and apply in one run, what the monthly pipeline runs. Rotates every
//! identity the fleet judges `rotate` (of the selection, for a canary run; with `--force`, also
//! those it would keep); `--dry-run` prints the plan and writes nothing.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::Destination;
use crate::exit::Exit;
use crate::select::Selection;
use crate::survey::End;
use crate::write::{self, Settings, WriteRun};
use crate::{plan, report};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    /// Print the plan and write nothing.
    pub dry_run: Option<DryRun>,
    /// Which identities (all, unless `--node`/`--service` name some).
    pub selection: Selection,
    pub force: bool,
    pub write: Settings,
}

/// Where and how `--dry-run` writes its plan.
#[derive(Debug)]
pub struct DryRun {
    pub format: plan::Format,
    /// `None`: stdout.
    pub output: Option<PathBuf>,
}

pub(crate) fn rotate(o: &Options) -> Result<Exit> {
    if let Some(dry) = &o.dry_run {
        let checked = write::preflight(&o.root)?;
        let destination = Destination::check(dry.output.as_deref(), &o.root)?;
        let mut survey = checked.survey(o.as_of)?;
        o.selection.narrow(&mut survey)?;
        let mut judged = survey.judged();
        let scope = &survey.scope;
        destination.deliver(|w| plan::write(scope, &mut judged, dry.format, &mut &mut *w))?;
        let end = judged.end();
        eprint!("{}", report::plan_summary(scope, end));
        return Ok(end.totals.need(scope.as_of, None).into());
    }
    let run = WriteRun::begin(&o.root, o.as_of, &o.write)?;
    let mut survey = run.survey()?;
    o.selection.narrow(&mut survey)?;
    let end = End::of(
        &survey.scope,
        &survey.identities,
        &survey.issues,
        survey.hidden,
    );
    eprint!("{}", report::plan_summary(&survey.scope, &end));
    write::rotate_due(run, &survey, o.force)
}
