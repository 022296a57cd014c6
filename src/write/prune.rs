//! Retention: backups hold old private keys, so they do not stay forever. Pruning removes the
//! `backup/` of every run beyond the newest N, keeping each run's journal and report (the
//! history stays, the secrets go). It never touches a run that has not finished or has hooks
//! pending, nor the newest run to have changed each identity that still exists (so the last
//! rotation of everything can always be rolled back; an identity removed from the fleet pins
//! nothing), nor a backup file that is still the live file. Each prune is a
//! line in the audit log.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::record::audit;
use super::record::done::Done;
use super::record::entries;
use super::record::history::History;
use super::record::run_report::Outcome;
use crate::names::IdentityId;
use crate::store::{RunDir, Store};

/// What a prune did (or, dry, would do), run by run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// Runs whose backups went, with how many files.
    pub(crate) removed: Vec<(String, usize)>,
    /// Older runs whose backups stay, with why.
    pub(crate) kept: Vec<(String, String)>,
}

/// Removes the backups of the runs of `root` beyond the newest `keep` (none when `dry`).
pub(crate) fn prune(root: &Path, keep: usize, dry: bool, time: DateTime<Utc>) -> Result<Pruned> {
    let store = Store::of(root);
    let runs = store.runs()?;
    let older = runs.len().saturating_sub(keep);
    if older == 0 {
        return Ok(Pruned::default());
    }
    let fleet = crate::fsio::RootDir::open(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))?;
    // Each report read a line at a time, all in step; a report not in the layout rekey writes
    // has every report read whole instead.
    let pinned = match pins_streamed(&runs, older, &fleet) {
        Ok(pinned) => pinned,
        Err(_) => pins_held(&History::read(&store)?, older, &fleet),
    };
    let mut out = Pruned::default();
    for (run, pin) in runs[..older].iter().zip(pinned) {
        let id = run.id();
        let backup = run.backup();
        if !backup.exists() {
            continue; // pruned before
        }
        if !finished(run) {
            out.kept
                .push((id.to_string(), "the run has not finished".to_string()));
            continue;
        }
        if run.hooks_pending().exists() {
            out.kept
                .push((id.to_string(), "its hooks are pending".to_string()));
            continue;
        }
        if let Some(identity) = pin {
            let why = format!("newest run to change {identity}");
            out.kept.push((id.to_string(), why));
            continue;
        }
        // The audit line first: a prune cut short by a crash is on record, and the next prune
        // finishes it (and records it again).
        let files = remove_backup(root, &backup, true)?;
        if !dry {
            audit::pruned(root, id, files, time)?;
            remove_backup(root, &backup, false)?;
        }
        out.removed.push((id.to_string(), files));
    }
    Ok(out)
}

/// Whether a run ended: its journal is closed and its report written.
fn finished(run: &RunDir) -> bool {
    run.report().is_file() && entries::ended(&run.journal()).unwrap_or(false)
}

/// Whether an identity still exists, for what pins its newest run: only an identity surely
/// gone is let go (one that cannot be opened for another reason, a link at its name or no
/// permission, keeps its backups).
fn exists(fleet: &crate::fsio::RootDir, identity: &IdentityId) -> bool {
    !matches!(fleet.identity(identity), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// For each of the `older` oldest runs, the first identity (in (node, service) order) it is the
/// newest run to have changed and that still exists: what keeps its backups. Every report's
/// done identities are read in step, a line at a time (all in (node, service) order): memory
/// holds one identity per run, whatever the fleet's size.
fn pins_streamed(
    runs: &[RunDir],
    older: usize,
    fleet: &crate::fsio::RootDir,
) -> Result<Vec<Option<IdentityId>>> {
    let mut readers = Vec::new();
    for (n, run) in runs.iter().enumerate() {
        if let Some(mut done) = Done::open(run)?
            && let Some(first) = done.next_done()?
        {
            readers.push((n, first, done));
        }
    }
    let mut pinned = vec![None; older];
    while let Some(least) = readers.iter().map(|(_, id, _)| id).min().cloned() {
        // The newest run that changed `least`: the last of the runs it heads.
        let mut newest = 0;
        let mut at = 0;
        while at < readers.len() {
            let (n, head, done) = &mut readers[at];
            if *head != least {
                at += 1;
                continue;
            }
            newest = newest.max(*n);
            match done.next_done()? {
                Some(next) => {
                    *head = next;
                    at += 1;
                }
                None => {
                    readers.swap_remove(at);
                }
            }
        }
        if let Some(pin @ None) = pinned.get_mut(newest)
            && exists(fleet, &least)
        {
            *pin = Some(least);
        }
    }
    Ok(pinned)
}

/// [`pins_streamed`] from every report read whole.
fn pins_held(
    history: &History,
    older: usize,
    fleet: &crate::fsio::RootDir,
) -> Vec<Option<IdentityId>> {
    let mut newest = BTreeMap::new();
    for (n, (_, report)) in history.runs.iter().enumerate() {
        let Some(report) = report else {
            continue;
        };
        for i in report
            .identities
            .iter()
            .filter(|i| i.outcome == Outcome::Done)
        {
            if let Some(identity) = i.id() {
                newest.insert(identity, n);
            }
        }
    }
    let mut pinned = vec![None; older];
    for (identity, n) in newest {
        if let Some(pin @ None) = pinned.get_mut(n)
            && exists(fleet, &identity)
        {
            *pin = Some(identity);
        }
    }
    pinned
}

/// Removes the files of one run's backup (never one that is still the live file) and then its
/// empty directories; returns how many files went.
fn remove_backup(root: &Path, backup: &Path, dry: bool) -> Result<usize> {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(backup).follow_links(false) {
        let entry = entry.with_context(|| format!("failed to list {}", backup.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(backup)
            .expect("walkdir stays below its root");
        // The backup keeps the layout of `nodes/`: its file is the live one's.
        let live = crate::names::nodes_dir(root).join(rel);
        let same =
            |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
        let meta = entry
            .metadata()
            .with_context(|| format!("failed to read {}", entry.path().display()))?;
        if std::fs::symlink_metadata(&live).is_ok_and(|l| same(&l, &meta)) {
            continue;
        }
        if !dry {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("failed to remove {}", entry.path().display()))?;
        }
        removed += 1;
    }
    if !dry {
        let _ = remove_empty_dirs(backup);
        // The removals durable before the run goes on.
        sync_removed(backup)?;
    }
    Ok(removed)
}

fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_dirs(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Makes the removal of a run's backup durable: its run directory's entries (the backup gone,
/// or what is left of it).
fn sync_removed(backup: &Path) -> Result<()> {
    let run = crate::fsio::beside(backup);
    let mut dirs = vec![run.to_path_buf()];
    dirs.extend(
        walkdir::WalkDir::new(backup)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_dir())
            .map(|e| e.into_path()),
    );
    dirs.iter().try_for_each(|d| crate::fsio::sync_dir(d))
}
