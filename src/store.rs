//! The run store: rekey's own state under `<root>/.rekey/`. Every path below `.rekey` is built
//! here and nowhere else:
//!
//! ```text
//! .rekey/lock                      the writer lock
//! .rekey/audit.jsonl               the recovery and hook audit log
//! .rekey/runs/<id>/journal.jsonl   a run's journal
//! .rekey/runs/<id>/report.json     its report, once it ended
//! .rekey/runs/<id>/backup/<node>/<service>/   the files it replaced, per identity
//! .rekey/runs/<id>/hooks.pending   present while hook calls it journaled may not have run
//! .rekey/runs/<id>/hooks/           the output of each hook call it ran
//! ```
//!
//! What the files hold (journal records, reports, audit lines) belongs to the write wing; this
//! module only knows where they are, takes the lock and makes a run's directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::fsio;
use crate::names::IdentityId;

const STATE: &str = ".rekey";
const LOCK: &str = "lock";
const AUDIT_LOG: &str = "audit.jsonl";
const RUNS: &str = "runs";
const JOURNAL: &str = "journal.jsonl";
const REPORT: &str = "report.json";
const BACKUP: &str = "backup";
const HOOKS_PENDING: &str = "hooks.pending";
const HOOK_LOGS: &str = "hooks";

/// How long a writer tries again for the lock while it is held shared: far longer than a dry
/// run's look at it, far shorter than any run.
const LOOK_AT_THE_LOCK: std::time::Duration = std::time::Duration::from_millis(500);

/// The state of the fleet at a root: `<root>/.rekey`.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn of(root: &Path) -> Store {
        Store {
            dir: root.join(STATE),
        }
    }

    /// `.rekey` itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK)
    }

    pub(crate) fn audit_log(&self) -> PathBuf {
        self.dir.join(AUDIT_LOG)
    }

    /// `.rekey/runs`, where every run has its directory.
    pub(crate) fn runs_dir(&self) -> PathBuf {
        self.dir.join(RUNS)
    }

    /// The directory of run `id` (which may not exist).
    pub(crate) fn run(&self, id: &str) -> RunDir {
        RunDir {
            id: id.to_string(),
            dir: self.runs_dir().join(id),
        }
    }

    /// The runs recorded, in start order (ids name the start); none when there is no store yet.
    pub(crate) fn runs(&self) -> Result<Vec<RunDir>> {
        let runs = self.runs_dir();
        let entries = match std::fs::read_dir(&runs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("failed to list {}", runs.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids.iter().map(|id| self.run(id)).collect())
    }

    /// The run `id` names, if the store records it (a name with a `/` never does).
    pub(crate) fn find(&self, id: &str) -> Result<Option<RunDir>> {
        if id.contains('/') {
            return Ok(None);
        }
        Ok(self.runs()?.into_iter().find(|run| run.id == id))
    }

    /// Takes `.rekey/lock`, or fails if another writer holds it (after trying for
    /// [`LOOK_AT_THE_LOCK`], the longest a dry run looks at it).
    pub(crate) fn lock(&self) -> Result<Lock> {
        fsio::create_private_dir(&self.dir)?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("failed to open the lock {}", path.display()))?;
        // A dry run's look at the lock holds it shared for an instant: a writer that meets
        // only that tries again for a moment; one that meets another writer gives up after it.
        let patience = std::time::Instant::now() + LOOK_AT_THE_LOCK;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => return Err(held(&path)),
                Err(TryLockError::Error(e)) => {
                    return Err(e)
                        .with_context(|| format!("failed to take the lock {}", path.display()));
                }
            }
        }
    }

    /// Fails as [`Store::lock`] would when another writer holds `.rekey/lock` now, seen by
    /// holding it shared for an instant and writing nothing (a dry run refuses as its run
    /// would): a writer meeting that instant tries again ([`Store::lock`]), so a dry run never
    /// makes a run fail.
    pub(crate) fn refuse_if_locked(&self) -> Result<()> {
        let path = self.lock_path();
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to open the lock {}", path.display()));
            }
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => Err(held(&path)),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to look at the lock {}", path.display()))
            }
        }
    }

    /// Makes the directory of a new run (with its `backup/`), named by the wall clock `started`
    /// so that ids sort in start order. Its journal is the caller's to create.
    pub(crate) fn create_run(&self, started: DateTime<Utc>) -> Result<RunDir> {
        let runs = self.runs_dir();
        fsio::create_private_dir(&runs)?;
        let stem = run_id_at(started);
        let mut id = stem.clone();
        let mut n = 1;
        while runs.join(&id).exists() {
            id = format!("{stem}-{n}");
            n += 1;
        }
        let run = self.run(&id);
        fsio::create_private_dir(&run.backup())?;
        Ok(run)
    }

}

/// The id of a run started at `started` (the wall clock, in UTC, to the microsecond), before
/// `-N` is appended to tell it from a run of the same instant.
pub(crate) fn run_id_at(started: DateTime<Utc>) -> String {
    started.format("%Y%m%dT%H%M%S%.6fZ").to_string()
}

/// Where a run's `backup/` keeps identity `id`'s files: `backup/<node>/<service>/`, the layout
/// of `nodes/` below it.
pub(crate) fn backup_of(backup: &Path, id: &IdentityId) -> PathBuf {
    backup.join(id.node()).join(id.service())
}

/// Held while a command writes; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// One run's directory, `.rekey/runs/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunDir {
    id: String,
    dir: PathBuf,
}

impl RunDir {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn journal(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    pub(crate) fn report(&self) -> PathBuf {
        self.dir.join(REPORT)
    }

    /// Where the files the run replaced are kept, per identity.
    pub(crate) fn backup(&self) -> PathBuf {
        self.dir.join(BACKUP)
    }

    /// A CA rotation stage's new `ca/` tree while it is built (`ca-new/`): exchanged with
    /// `ca/` in one rename, after which the same name holds the tree it replaced, until it is
    /// renamed `ca-old/`.
    pub(crate) fn ca_new(&self) -> PathBuf {
        self.dir.join("ca-new")
    }

    /// The `ca/` tree a CA rotation stage replaced: what a rollback of the stage puts back.
    pub(crate) fn ca_old(&self) -> PathBuf {
        self.dir.join("ca-old")
    }

    /// Where the output of each hook call of this run is kept.
    pub(crate) fn hook_logs(&self) -> PathBuf {
        self.dir.join(HOOK_LOGS)
    }

    /// The marker that says hook calls of this run may not have run.
    pub(crate) fn hooks_pending(&self) -> PathBuf {
        self.dir.join(HOOKS_PENDING)
    }

    /// The wall-clock start its id names (`20261128T000000.000000Z`, maybe with `-N`).
    pub(crate) fn started(&self) -> Option<DateTime<Utc>> {
        let stem = self.id.split('-').next()?;
        chrono::NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%S%.fZ")
            .ok()
            .map(|t| t.and_utc())
    }

    /// Whether the run may still be writing: it has a journal and no report. What a reader may
    /// not look at counts as unfinished: a monitoring user must not call a writer's file a
    /// leftover.
    pub(crate) fn may_be_unfinished(&self) -> bool {
        match std::fs::symlink_metadata(self.report()) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.journal().is_file(),
            Err(_) => true,
        }
    }
}

/// What a writer, and its dry run, say when another writer holds the lock at `path`.
fn held(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "another rekey is writing to this fleet (lock {} is held); nothing was changed",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_listed_in_start_order_and_named_once() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::of(root.path());
        assert!(store.runs().unwrap().is_empty(), "no store yet: no runs");
        let t: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
        let first = store.create_run(t).unwrap();
        let second = store.create_run(t).unwrap();
        let earlier = store.create_run(t - chrono::TimeDelta::days(1)).unwrap();
        assert_eq!(first.id(), "20261128T000000.000000Z");
        assert_eq!(second.id(), "20261128T000000.000000Z-1");
        assert!(second.backup().is_dir());
        let ids: Vec<String> = store.runs().unwrap().iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [earlier.id(), first.id(), second.id()]);
        assert_eq!(second.started(), Some(t));
        assert!(store.find("../x").unwrap().is_none());
        assert_eq!(store.find(first.id()).unwrap(), Some(first));
    }
}
