//! `rekey prune`: remove the backups (old private keys) of the runs beyond the newest N
//! (`--keep`, else the policy's `keep_runs`), keeping every run's journal and report.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::exit::Exit;
use crate::write::{Settings, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    /// How many of the newest runs keep their backups; `None`: the policy's `keep_runs`.
    pub keep: Option<usize>,
    /// The run date: the clock at start, to the second.
    pub as_of: DateTime<Utc>,
    pub write: Settings,
}

pub(crate) fn prune(o: &Options) -> Result<Exit> {
    // Pruning runs no hook, pending ones included: it only removes old backups. `--dry-run` is
    // the sink that writes nothing (`write.sink`): no lock, nothing removed, the same choice.
    let mut settings = o.write.clone();
    settings.hooks.skip = true;
    let run = WriteRun::begin(&o.root, o.as_of, &settings)?;
    let keep = match o.keep {
        Some(keep) => keep,
        None => run.policy().policy.keep_runs as usize,
    };
    let pruned = run.prune(keep)?;
    let dry = run.dry();
    let (verb, kept) = if dry {
        ("would remove", "would keep")
    } else {
        ("removed", "kept")
    };
    let mut out = String::new();
    for (id, files) in &pruned.removed {
        let files = crate::count::count(files, "file", "files");
        out.push_str(&format!("{verb} the backup of run {id} ({files})\n"));
    }
    for (id, why) in &pruned.kept {
        out.push_str(&format!("{kept} the backup of run {id}: {why}\n"));
    }
    crate::out::emit(&out)?;
    eprintln!(
        "rekey: {verb} the backups of {}; those of the newest {} stay{}",
        crate::count::count(pruned.removed.len(), "run", "runs"),
        crate::count::count(keep, "run", "runs"),
        if dry {
            " (--dry-run: nothing was written)"
        } else {
            ""
        }
    );
    Ok(Exit::Ok)
}
