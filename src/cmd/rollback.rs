//! `rekey rollback RUN_ID`: put back the files a run replaced, where they still hold what that
//! run wrote; anything changed since is reported and left alone. A run already undone is said
//! so, and nothing is written. `--dry-run` is the same rollback with the sink that writes
//! nothing: the same skips and failures, the report it would write.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::exit::Exit;
use crate::store::Store;
use crate::write::{
    self, FleetFacts, History, Items, Notes, Replacements, Restore, RunCommand, Settings, WriteRun,
};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub run_id: String,
    /// The run date: the clock at start, to the second.
    pub as_of: DateTime<Utc>,
    pub write: Settings,
}

pub(crate) fn rollback(o: &Options) -> Result<Exit> {
    // Before a run's records are read: a rollback refuses what it cannot start on.
    let checked = write::preflight(&o.root)?;
    let root = checked.root().to_path_buf();
    let store = Store::of(&root);
    let id = o.run_id.as_str();
    let Some(run_dir) = store.find(id)? else {
        bail!(
            "no run {id:?} in {} (see rekey runs)",
            store.runs_dir().display()
        );
    };
    let restore = Restore {
        fleet: crate::fsio::RootDir::open(&root)
            .with_context(|| format!("failed to open fleet root {}", root.display()))?,
        run_id: id,
        backup: run_dir.backup(),
    };
    let run = WriteRun::begin_checked(checked, o.as_of, &o.write)?;
    // Read after the replay: an interrupted run's report is complete only then. Read twice and
    // held never: a first pass counts what is to be put back, the second hands it to the
    // batches a line at a time.
    let mut first = Replacements::open(&run_dir)?;
    let mut total = 0usize;
    while let Some((identity, files)) = first.next()? {
        total += usize::from(restore.changed(&identity, &files));
    }
    // A CA rotation stage's run: ca/ goes back to the tree it replaced, first.
    let ca = write::ca_rollback(&root, &run_dir)?;
    if total == 0 && ca.is_none() {
        // Nothing to put back: no run starts, so nothing is written (and `rekey runs` does not
        // list the run as rolled back again).
        match rolled_back_by(&store, id)? {
            Some(by) => {
                eprintln!("rekey: run {id} was already rolled back by run {by}; nothing to do")
            }
            None => eprintln!(
                "rekey: every file run {id} replaced holds what it held before; nothing to roll back"
            ),
        }
        return Ok(Exit::Ok);
    }
    let notes = Notes {
        rolls_back: Some(id.to_string()),
        ..Notes::default()
    };
    let mut started = run.start(RunCommand::Rollback, notes)?;
    if let Some(change) = &ca {
        started.change_ca(change)?;
    }
    let mut second = Replacements::open(&run_dir)?;
    // The report was read whole once already: an error now is the disk's, and ends the
    // rollback early (the run ends cleanly with what it did).
    let mut unread = None;
    let each = std::iter::from_fn(|| {
        loop {
            match second.next() {
                Ok(Some((identity, files))) if restore.changed(&identity, &files) => {
                    return Some((identity, files));
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(err) => {
                    unread = Some(err);
                    return None;
                }
            }
        }
    });
    let items = Items { each, total };
    let streamed = started.stream(&restore, items, Vec::new())?;
    let (_, exit) = streamed.finish(FleetFacts::default())?;
    match unread {
        Some(err) => Err(err.context(format!(
            "failed to read the report of run {id} again; what it lists after the identities \
             rolled back is unchanged: run `rekey rollback {id}` again"
        ))),
        None => Ok(exit),
    }
}

/// The newest run that rolled back `id`, if one did.
fn rolled_back_by(store: &Store, id: &str) -> Result<Option<String>> {
    let history = History::read(store)?;
    let newest = history
        .rolled_back_by(id)
        .filter(|(_, report)| report.counts.done > 0)
        .last();
    Ok(newest.map(|(run, _)| run.id().to_string()))
}
