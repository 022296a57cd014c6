//! `rekey rollback RUN_ID`: put back the files a run replaced, where they still hold what that
//! run wrote; anything changed since is reported and left alone. A run already undone is said
//! so, and nothing is written. `--dry-run` is the same rollback with the sink that writes
//! nothing: the same skips and failures, the report it would write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::exit::Exit;
use crate::names::IdentityId;
use crate::store::{RunDir, Store};
use crate::write::{
    self, FleetFacts, History, Notes, Now, Outcome, Replaced, Restore, RunCommand, Settings,
    WriteRun,
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
    // Read after the replay: an interrupted run's report is complete only then.
    let mut items = replaced(&run_dir)?;
    items.retain(|id, files| files.iter().any(|f| restore.now(id, f) != Now::AsBefore));
    // A CA rotation stage's run: ca/ goes back to the tree it replaced, first.
    let ca = write::ca_rollback(&root, &run_dir)?;
    if items.is_empty() && ca.is_none() {
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
    let facts = FleetFacts::default();
    let (_, exit) = started.execute(&restore, &items, Vec::new(), Vec::new(), facts)?;
    Ok(exit)
}

/// The files each identity of run `id` had replaced, from its report.
fn replaced(run: &RunDir) -> Result<BTreeMap<IdentityId, Replaced>> {
    let id = run.id();
    let report = write::read_report(run)?;
    let mut items = BTreeMap::new();
    for i in report
        .identities
        .into_iter()
        .filter(|i| i.outcome == Outcome::Done && !i.files.is_empty())
    {
        let valid = i
            .id()
            .filter(|_| i.files.iter().all(|f| crate::names::is_valid(&f.name)));
        let Some(identity) = valid else {
            bail!(
                "report of run {id} names an invalid path ({}/{})",
                i.node,
                i.service
            );
        };
        if items.insert(identity, i.files).is_some() {
            bail!("report of run {id} names {}/{} twice", i.node, i.service);
        }
    }
    Ok(items)
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
