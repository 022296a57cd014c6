//! `rekey status`: every credential's expiry and state (the CA and the policy first, a summary
//! last), narrowed by the filters, as a table, JSON, Prometheus metrics or an HTML page, to stdout or
//! atomically to a file, with the exit code a monitor reads.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::Destination;
use crate::exit::Exit;
use crate::metrics::{self, Families, LastRun};
use crate::report::hooks::{Pending, PendingHook};
use crate::select::{ExitRule, Filter, Grain};
use crate::{html, report, survey, write};

/// What `status` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people; `colour` states (stdout is a terminal and `NO_COLOR` is unset).
    Table {
        colour: bool,
    },
    Json,
    /// Prometheus text format; `x509`: include the `x509_cert_*` families.
    Prometheus {
        x509: bool,
    },
    /// The expiry report, one self-contained HTML page.
    Html,
}

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub format: Format,
    /// Write to FILE atomically instead of stdout.
    pub output: Option<PathBuf>,
    /// What counts as work due (exit 3).
    pub rule: ExitRule,
    /// Which identities and credentials to show (and judge the exit code on).
    pub filter: Filter,
}

pub(crate) fn status(o: &Options) -> Result<Exit> {
    let destination = Destination::check(o.output.as_deref(), &o.root)?;
    let last_run = match o.format {
        Format::Prometheus { .. } => last_run(&o.root),
        _ => None,
    };
    let pending = pending_hooks(&o.root);
    let hook_counts = match o.format {
        Format::Prometheus { .. } => write::hook_counts(&o.root),
        _ => None,
    };
    let filter = Some((&o.filter, Grain::Credential));
    survey::read(&o.root, o.as_of, filter, |scope, judged| {
        for warning in &scope.warnings {
            eprintln!("rekey: warning: {}", crate::values::Escaped::new(warning));
        }
        let render = |w: &mut dyn std::io::Write| match o.format {
            Format::Table { colour } => report::write_status_table(
                scope,
                judged,
                Some(o.rule),
                pending.as_ref(),
                colour && o.output.is_none(),
                &mut &mut *w,
            ),
            Format::Json => {
                report::write_status_json(scope, judged, pending.as_ref(), &mut &mut *w)
            }
            Format::Prometheus { x509 } => metrics::write(
                scope,
                judged,
                last_run.as_ref(),
                hook_counts,
                Families { x509 },
                &mut &mut *w,
            ),
            Format::Html => html::expiry::write(scope, judged, &mut &mut *w),
        };
        destination.deliver(render)?;
        Ok(o.rule.need(&judged.end().totals, scope).into())
    })?
}

/// The newest run of the fleet that left a report, as the metrics show it.
fn last_run(root: &Path) -> Option<LastRun> {
    write::last_run(&crate::store::Store::of(root)).map(|report| report.last_run())
}

/// The hooks earlier runs left pending, read through the journal's own reader (no lock, no hook
/// runs) and set aside as they come; `None` when the run store cannot be read (not readable by
/// this user), said on stderr.
fn pending_hooks(root: &Path) -> Option<Pending> {
    let mut pending = Pending::new();
    let read = write::each_pending_hook(root, |p| {
        pending.push(PendingHook {
            run_id: p.run_id.clone(),
            call: p.call.call,
            kind: p.call.kind.as_str().to_string(),
            identity: p.call.dir(),
            source: p.call.source.label(),
            last_error: p.why().to_string(),
        });
        Ok(())
    });
    if let Err(e) = read {
        let why = crate::values::Escaped::new(&format!("{e:#}")).to_string();
        eprintln!("rekey: warning: pending hooks not known: {why}");
        return None;
    }
    pending.close();
    Some(pending)
}
