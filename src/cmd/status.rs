//! `rekey status`: every credential's expiry and state, the CA first.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use super::emit_with;
use crate::exit::Exit;
use crate::report;
use crate::survey::Survey;

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub json: bool,
    /// Credentials kept but expiring within this count as work due.
    pub warn: TimeDelta,
}

pub fn status(o: &Options) -> Result<Exit> {
    let survey = Survey::take(&o.root, o.as_of)?;
    for warning in &survey.warnings {
        eprintln!("rekey: warning: {warning}");
    }
    if o.json {
        emit_with(|w| report::write_status_json(&survey, w))?;
    } else {
        emit_with(|w| report::write_status_table(&survey, w))?;
    }
    Ok(survey.attention(Some(o.warn)).into())
}
