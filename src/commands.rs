//! One function per subcommand: each takes validated arguments and the run's instant, does its
//! work through the library, writes its output and returns the exit code.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};

use crate::cli::{PlanFormat, StatusFormat};
use crate::exit::Exit;
use crate::fsio;
use crate::plan;
use crate::report;
use crate::survey::Survey;

/// Writes data to stdout. A closed pipe is not an error worth a message (see `main`).
pub fn emit(text: &str) -> Result<()> {
    emit_with(|w| w.write_all(text.as_bytes()))
}

/// Streams data to stdout through a buffer.
pub fn emit_with(
    fill: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    fill(&mut out)
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
        StatusFormat::Table => emit_with(|w| report::write_status_table(&survey, w))?,
        StatusFormat::Json => emit_with(|w| report::write_status_json(&survey, w))?,
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
    let format = match format {
        PlanFormat::Toml => plan::Format::Toml,
        PlanFormat::Json => plan::Format::Json,
    };
    match output {
        Some(path) => {
            fsio::write_atomic_with(path, 0o644, |w| plan::write(&survey, format, &mut &mut *w))?
        }
        None => emit_with(|w| plan::write(&survey, format, w))?,
    }
    eprint!("{}", report::plan_summary(&survey));
    Ok(survey.attention(None).into())
}
