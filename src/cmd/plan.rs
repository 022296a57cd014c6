//! `rekey plan`: the dry-run plan (or its HTML report for a reviewer), to stdout or atomically to
//! a file, and its summary on stderr.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::Destination;
use crate::exit::Exit;
use crate::select::{Filter, Grain};
use crate::{html, plan, report, survey};

/// What `plan` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The plan file, for `apply`.
    Plan(plan::Format),
    /// The plan report for a reviewer, one self-contained HTML page.
    Html,
}

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub format: Output,
    /// Where to write the plan; `None`: stdout.
    pub output: Option<PathBuf>,
    /// Which identities to plan (a plan can only narrow what `apply` does).
    pub filter: Filter,
}

pub(crate) fn plan(o: &Options) -> Result<Exit> {
    let filter = Some((&o.filter, Grain::Identity));
    let destination = Destination::check(o.output.as_deref(), &o.root)?;
    survey::read(&o.root, o.as_of, filter, |scope, judged| {
        let render = |w: &mut dyn std::io::Write| match o.format {
            Output::Plan(format) => plan::write(scope, judged, format, &mut &mut *w),
            Output::Html => html::plan::write(scope, judged, &mut &mut *w),
        };
        destination.deliver(render)?;
        let end = judged.end();
        report::show_plan_summary(scope, end, 0);
        Ok(end.totals.need(scope, None).into())
    })?
}
