//! A run in progress: its directory in the store and its open journal.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::entries::{self, Journal, Record};
use super::history;
use super::run_report::{Lines, Notes, Report, RunCommand};
use crate::store::{RunDir, Store};

pub(crate) struct Run {
    pub(crate) dir: RunDir,
    pub(crate) journal: Journal,
}

impl Run {
    /// Starts a run: a new directory named by the wall clock `started`, and its journal, which
    /// opens with what the run is.
    pub(crate) fn start(
        store: &Store,
        started: DateTime<Utc>,
        command: RunCommand,
        as_of: DateTime<Utc>,
        notes: &Notes,
    ) -> Result<Run> {
        let dir = store.create_run(started)?;
        let mut journal = Journal::create(&dir.journal())?;
        journal.append(&Record::Start {
            version: entries::VERSION,
            run_id: dir.id().to_string(),
            command: command.as_str().to_string(),
            as_of: crate::classify::stamp(as_of),
            operator: notes.operator.clone(),
            reason: notes.reason.clone(),
        })?;
        // The journal's name, and the run's, durable before anything the journal announces.
        crate::fsio::sync_dirs_up_to(&dir.journal(), crate::fsio::beside(store.dir()))?;
        Ok(Run { dir, journal })
    }

    pub(crate) fn id(&self) -> &str {
        self.dir.id()
    }

    /// Writes `report.json`, then closes the journal (a run cut short between the two is
    /// replayed and reported again).
    pub(crate) fn finish(mut self, report: &Report, lines: &Lines) -> Result<()> {
        history::save_report(&self.dir, report, lines)?;
        self.journal.append(&Record::End { recovered: false })
    }
}
