//! One function per subcommand: each takes validated arguments and the run's instant, does its
//! work through the library, writes its output and returns the exit code.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};

use crate::cli::{PlanFormat, StatusFormat};
use crate::exit::Exit;
use crate::fsio;
use crate::plan::Plan;
use crate::report;
use crate::survey::Survey;

/// Writes data to stdout. A closed pipe is not an error worth a message (see `main`).
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("failed to write to stdout")
}

pub fn status(
    root: &Path,
    as_of: DateTime<Utc>,
    format: StatusFormat,
    warn: TimeDelta,
) -> Result<Exit> {
    let survey = Survey::take(root, as_of)?;
    match format {
        StatusFormat::Table => emit(&report::status_table(&survey))?,
        StatusFormat::Json => emit(&report::status_json(&survey))?,
    }
    Ok(survey.attention(Some(warn)).into())
}

pub fn plan(
    root: &Path,
    as_of: DateTime<Utc>,
    format: PlanFormat,
    output: Option<&Path>,
) -> Result<Exit> {
    let survey = Survey::take(root, as_of)?;
    let plan = Plan::from_survey(&survey);
    let text = match format {
        PlanFormat::Toml => plan.to_toml(),
        PlanFormat::Json => plan.to_json(),
    };
    match output {
        Some(path) => fsio::write_atomic(path, text.as_bytes(), 0o644)?,
        None => emit(&text)?,
    }
    eprint!("{}", report::plan_summary(&survey));
    Ok(survey.attention(None).into())
}
