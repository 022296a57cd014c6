//! `rekey plan`: the dry-run plan, to stdout or atomically to a file, and its summary on stderr.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::emit_with;
use crate::exit::Exit;
use crate::select::{Filter, Grain};
use crate::survey::Survey;
use crate::{fsio, plan, report};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub format: plan::Format,
    /// Where to write the plan; `None`: stdout.
    pub output: Option<PathBuf>,
    /// Which identities to plan (a plan can only narrow what `apply` does).
    pub filter: Filter,
}

pub fn plan(o: &Options) -> Result<Exit> {
    let mut survey = Survey::take(&o.root, o.as_of)?;
    o.filter.apply(&mut survey, Grain::Identity)?;
    match &o.output {
        Some(path) => fsio::write_atomic_with(path, 0o644, |w| {
            plan::write(&survey, o.format, &mut &mut *w)
        })?,
        None => emit_with(|w| plan::write(&survey, o.format, w))?,
    }
    eprint!("{}", report::plan_summary(&survey));
    Ok(survey.attention(None).into())
}
