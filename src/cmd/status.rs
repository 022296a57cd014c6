//! `rekey status`: every credential's expiry and state (the CA and the policy first, a summary
//! last), narrowed by the filters, with the exit code a monitor reads.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::emit_with;
use crate::exit::Exit;
use crate::report;
use crate::select::{ExitRule, Filter, Grain};
use crate::survey::Survey;

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub json: bool,
    /// What counts as work due (exit 3).
    pub rule: ExitRule,
    /// Which identities and credentials to show (and judge the exit code on).
    pub filter: Filter,
    /// Colour the states (stdout is a terminal and `NO_COLOR` is unset).
    pub colour: bool,
}

pub fn status(o: &Options) -> Result<Exit> {
    let mut survey = Survey::take(&o.root, o.as_of)?;
    for warning in &survey.warnings {
        eprintln!("rekey: warning: {warning}");
    }
    o.filter.apply(&mut survey, Grain::Credential)?;
    if o.json {
        emit_with(|w| report::write_status_json(&survey, w))?;
    } else {
        emit_with(|w| report::write_status_table(&survey, o.colour, w))?;
    }
    Ok(o.rule.attention(&survey).into())
}
