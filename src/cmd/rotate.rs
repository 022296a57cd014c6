//! `rekey rotate`: plan and apply in one run, what the monthly pipeline runs. Rotates every
//! identity the fleet judges `rotate`; `--dry-run` prints the plan and writes nothing.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::emit_with;
use crate::exit::Exit;
use crate::survey::Survey;
use crate::write::{self, Settings, WriteRun};
use crate::{plan, report};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    /// Print the plan (in this format) and write nothing.
    pub dry_run: Option<plan::Format>,
    pub write: Settings,
}

pub fn rotate(o: &Options) -> Result<Exit> {
    if let Some(format) = o.dry_run {
        let survey = Survey::take(&o.root, o.as_of)?;
        emit_with(|w| plan::write(&survey, format, w))?;
        eprint!("{}", report::plan_summary(&survey));
        return Ok(survey.attention(None).into());
    }
    let run = WriteRun::begin(&o.root, o.as_of, o.write)?;
    let survey = Survey::take(run.root(), run.as_of())?;
    eprint!("{}", report::plan_summary(&survey));
    write::rotation::rotate_due(run, &survey)
}
