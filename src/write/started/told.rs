//! How a run that ended is told: its report printed (the table or the JSON document) with why
//! it stopped short, and the report handed to a command that shows it itself.

use anyhow::{Context, Result};

use crate::write::batches::Stop;
use crate::write::record::run_report::{Lines, Report, RunCommand};
use crate::write::run::Shown;

/// The report a run hands its command: with its identities read back when the command shows
/// it (the review page), without them otherwise (they are in `report.json`).
pub(super) fn handed(mut report: Report, lines: &Lines, shown: Shown) -> Result<Report> {
    if shown == Shown::ByCommand {
        report.identities = lines
            .hold()
            .context("failed to read the run's report lines")?;
        report.needs_attention = report
            .attention()
            .collect::<std::io::Result<_>>()
            .context("failed to read back what the run leaves for a person")?;
        report.left = None;
    }
    Ok(report)
}

/// Prints a run's report (the table, or the JSON document; nothing when the command renders
/// it) and, on stderr, why it stopped
/// short or could not be saved.
pub(super) fn tell(
    report: &Report,
    lines: &Lines,
    stopped: Option<&Stop>,
    saved: &Result<()>,
    shown: Shown,
) -> Result<()> {
    // An error reading the run's lines (or what it leaves for a person) back is kept aside and
    // said as that, not as a failure to write to stdout (which is where it surfaces,
    // mid-output).
    let unread: std::cell::RefCell<Option<std::io::Error>> = std::cell::RefCell::new(None);
    let note = |e: std::io::Error| {
        let kind = e.kind();
        unread.borrow_mut().get_or_insert(e);
        std::io::Error::from(kind)
    };
    let read = || {
        lines
            .read()
            .map(|each| each.map(|line| line.map_err(note)))
            .map_err(note)
    };
    let written = match shown {
        Shown::Table => crate::out::emit_with(|w| report.write_summary(read, w)),
        Shown::Json => crate::out::emit_with(|w| {
            let attention = report.attention().map(|a| a.map_err(note));
            report.write_json_with(read()?, attention, w)
        }),
        Shown::ByCommand => Ok(()),
    };
    if let Some(e) = unread.into_inner() {
        return Err(e)
            .context("failed to read back the run's report lines, or what it leaves for a person");
    }
    written?;
    if let Some(stop) = stopped {
        let again = match report.command {
            RunCommand::Apply => "make a new plan and apply it".to_string(),
            command => format!("run `rekey {}` again", command.as_str()),
        };
        let first = match stop {
            Stop::NoSpace(_) => "free some space and ",
            Stop::Interrupted(_) => "",
        };
        eprintln!(
            "rekey: error: {stop}; stopped after {} of {}, the rest are unchanged; \
             {first}{again}",
            report.counts.done,
            crate::count::count(lines.tally().lines, "identity", "identities"),
        );
    }
    if let Err(err) = saved {
        eprintln!(
            "rekey: error: {err:#}; the next writing command replays run {} and saves its report",
            report.run_id
        );
    }
    Ok(())
}
