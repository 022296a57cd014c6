//! `rekey rotate`: plan and apply in one run, what the monthly pipeline runs. Rotates every
//! identity the fleet judges `rotate` (of the selection, for a canary run; with `--force`, also
//! the credentials it would keep). `--dry-run` is the same run with the sink that writes
//! nothing (`write::Sink::Nowhere`): the same decisions, the report it would write.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::classify::Action;
use crate::exit::Exit;
use crate::report;
use crate::select::Selection;
use crate::survey::End;
use crate::write::{self, Settings, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    /// Which identities (all, unless `--node`/`--service` name some).
    pub selection: Selection,
    pub force: bool,
    /// How the run is carried out, `--dry-run` (its sink) included.
    pub write: Settings,
}

pub(crate) fn rotate(o: &Options) -> Result<Exit> {
    let run = WriteRun::begin(&o.root, o.as_of, &o.write)?;
    let mut survey = run.survey()?;
    o.selection.narrow(&mut survey)?;
    let end = End::of(
        &survey.scope,
        &survey.identities,
        &survey.issues,
        survey.hidden,
    );
    let targets = write::due_targets(&survey, o.force);
    let forced: usize = targets
        .values()
        .map(|t| {
            t.credentials()
                .filter(|e| e.rotate && e.judged == Action::Keep)
                .count()
        })
        .sum();
    eprint!("{}", report::plan_summary(&survey.scope, &end, forced));
    write::rotate_due(run, &survey, targets)
}
