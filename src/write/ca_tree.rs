//! A CA rotation stage's change of `ca/`, made in one step: the whole new tree is built in the
//! run's directory (`ca-new/`: every file that stays hard-linked, every new one written and
//! synced), then exchanged with `ca/` in one `renameat2(RENAME_EXCHANGE)`. So readers and a
//! crash see `ca/` in the stage before or the stage after, never between.
//!
//! | step | what happens |
//! | --- | --- |
//! | prepare | record `ca` `prepare` (`from`, `to`, and for `finish` the retired key's digest) |
//! | staged | `ca-new/` built: files kept are hard links, new files created exclusively; synced |
//! | ready | record `ca` `ready` |
//! | exchanged | `ca-new/` and `ca/` exchanged; the fleet root synced |
//! | renamed | the old tree, now at `ca-new/`, renamed `ca-old/` (what a rollback puts back); a retired key's every copy under `.rekey/runs/` removed |
//! | commit | record `ca` `commit` |
//!
//! Replay: `prepare` without `ready` removes `ca-new/` and records `abort`; `ready` without
//! `commit` finishes the exchange (when `ca/` still shows the stage before), the rename and the
//! removal of the retired key's copies, and records `commit`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::journal::{Journal, Secret, crash_point};
use super::record::entries::{CaStep, Record};
use crate::ca::{CaDir, Stage};
use crate::digest::Digest;
use crate::fsio;
use crate::store::{RunDir, Store};

/// One file of a new `ca/` tree.
#[derive(Debug)]
enum Entry {
    /// A file that stays as it is: hard-linked from where it is now.
    Keep(PathBuf),
    /// A new file, created with `mode`.
    Write { bytes: Secret, mode: u32 },
}

/// The `ca/` tree a stage leaves: each file by its path under `ca/`.
#[derive(Debug)]
pub(crate) struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
    /// The mode of each directory of the tree as it was (`""`: `ca/` itself).
    dirs: BTreeMap<PathBuf, u32>,
}

impl Tree {
    /// The tree under `dir` as it is: every regular file kept, every directory with its mode.
    /// Anything else (a link, a FIFO) is refused: `ca/` is rekey's trusted configuration.
    pub(crate) fn of(dir: &Path) -> Result<Tree> {
        let mut tree = Tree {
            entries: BTreeMap::new(),
            dirs: BTreeMap::new(),
        };
        tree.walk(dir, Path::new(""))?;
        Ok(tree)
    }

    fn walk(&mut self, top: &Path, rel: &Path) -> Result<()> {
        let dir = top.join(rel);
        let meta = fs::symlink_metadata(&dir)
            .with_context(|| format!("failed to inspect {}", dir.display()))?;
        self.dirs
            .insert(rel.to_path_buf(), meta.permissions().mode() & 0o7777);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("failed to list {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("failed to list {}", dir.display()))?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = top.join(&rel);
            let kind = fs::symlink_metadata(&path)
                .with_context(|| format!("failed to inspect {}", path.display()))?
                .file_type();
            if kind.is_dir() {
                self.walk(top, &rel)?;
            } else if kind.is_file() {
                self.entries.insert(rel, Entry::Keep(path));
            } else {
                bail!(
                    "{} is not a regular file or directory: a CA rotation rewrites ca/ and \
                     keeps only those; move it out of ca/ and run again",
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// Puts a new file at `rel` (replacing what the tree held there).
    pub(crate) fn put(&mut self, rel: &str, bytes: Vec<u8>, mode: u32) {
        self.entries.insert(
            PathBuf::from(rel),
            Entry::Write {
                bytes: Secret::new(bytes),
                mode,
            },
        );
    }

    /// Leaves the file at `rel` out of the tree.
    pub(crate) fn remove(&mut self, rel: &str) {
        self.entries.remove(Path::new(rel));
    }

    /// Moves the file at `from` to `to`.
    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let Some(entry) = self.entries.remove(Path::new(from)) else {
            bail!("ca/{from} is missing");
        };
        self.entries.insert(PathBuf::from(to), entry);
        Ok(())
    }

    /// Builds the tree at `at` (which must not exist) and makes it durable.
    fn build(&self, at: &Path) -> Result<()> {
        let mode = |rel: &Path| self.dirs.get(rel).copied().unwrap_or(0o755);
        fs::DirBuilder::new()
            .mode(mode(Path::new("")))
            .create(at)
            .with_context(|| format!("failed to create {}", at.display()))?;
        let mut dirs = vec![at.to_path_buf()];
        for (rel, entry) in &self.entries {
            let mut parent = PathBuf::new();
            for part in rel.parent().into_iter().flat_map(Path::components) {
                parent.push(part);
                let dir = at.join(&parent);
                if !dir.exists() {
                    fs::DirBuilder::new()
                        .mode(mode(&parent))
                        .create(&dir)
                        .with_context(|| format!("failed to create {}", dir.display()))?;
                    // The umask may have narrowed it.
                    fs::set_permissions(&dir, fs::Permissions::from_mode(mode(&parent)))?;
                    dirs.push(dir);
                }
            }
            let path = at.join(rel);
            match entry {
                Entry::Keep(from) => fs::hard_link(from, &path).with_context(|| {
                    format!("failed to link {} to {}", from.display(), path.display())
                })?,
                Entry::Write { bytes, mode } => {
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(*mode)
                        .open(&path)
                        .with_context(|| format!("failed to create {}", path.display()))?;
                    file.set_permissions(fs::Permissions::from_mode(*mode))?;
                    file.write_all(bytes.expose())
                        .and_then(|()| file.sync_all())
                        .with_context(|| format!("failed to write {}", path.display()))?;
                }
            }
        }
        fs::set_permissions(at, fs::Permissions::from_mode(mode(Path::new(""))))?;
        for dir in dirs.iter().rev() {
            fsio::sync_dir(dir)?;
        }
        fsio::sync_dir(fsio::beside(at))
    }
}

/// A stage's change of `ca/`: from one stage to another, to the tree given.
#[derive(Debug)]
pub(crate) struct CaChange {
    pub(crate) from: Stage,
    pub(crate) to: Stage,
    pub(crate) tree: Tree,
    /// The digest of a retired CA key file: every copy under `.rekey/runs/` is removed once
    /// `ca/` no longer holds it.
    pub(crate) purge: Option<Digest>,
}

impl CaChange {
    fn record(&self, step: CaStep) -> Record {
        Record::Ca {
            step,
            from: self.from.name().to_string(),
            to: self.to.name().to_string(),
            purge_sha256: self.purge,
        }
    }
}

/// Changes `ca/` of the fleet at `root` through the protocol above, in the run `run`.
pub(crate) fn change(journal: &mut Journal, root: &Path, run: &RunDir, c: &CaChange) -> Result<()> {
    journal.append(&c.record(CaStep::Prepare))?;
    crash_point("ca_prepared");
    if let Err(err) = c.tree.build(&run.ca_new()) {
        remove_tree(&run.ca_new())?;
        journal.append(&c.record(CaStep::Abort))?;
        return Err(err.context("nothing was changed in ca/"));
    }
    crash_point("ca_staged");
    journal.append(&c.record(CaStep::Ready))?;
    crash_point("ca_ready");
    settle(root, run, c.from, c.to, c.purge)?;
    journal.append(&c.record(CaStep::Commit))?;
    crash_point("ca_committed");
    Ok(())
}

/// After `ready`: the exchange (unless it happened), the old tree renamed `ca-old/`, a retired
/// key's copies removed.
fn settle(root: &Path, run: &RunDir, from: Stage, to: Stage, purge: Option<Digest>) -> Result<()> {
    let ca = CaDir::of(root);
    let now = ca.stage().map_err(|e| anyhow::anyhow!("{e}"))?;
    let staged = run.ca_new();
    if now == from && staged.is_dir() {
        exchange(&staged, ca.path())?;
        fsio::sync_dir(root)?;
        fsio::sync_dir(run.path())?;
        crash_point("ca_exchanged");
    } else if now != to {
        bail!(
            "{} shows the stage {} where run {} left it {} or {}: it was changed by hand; \
             restore it before running rekey again",
            ca.path().display(),
            now.name(),
            run.id(),
            from.name(),
            to.name()
        );
    }
    if staged.is_dir() {
        fs::rename(&staged, run.ca_old())
            .with_context(|| format!("failed to rename {}", staged.display()))?;
        fsio::sync_dir(run.path())?;
    }
    if let Some(key) = purge {
        purge_copies(&Store::of(root).runs_dir(), &key)?;
    }
    Ok(())
}

/// Replays the `ca/` change an interrupted run left, if any (before its batches are replayed):
/// `last` is the last `ca` record of its journal.
pub(crate) fn replay(root: &Path, run: &RunDir, last: Option<&Record>) -> Result<()> {
    let Some(Record::Ca {
        step,
        from,
        to,
        purge_sha256: purge,
    }) = last
    else {
        return Ok(());
    };
    let (step, purge) = (*step, *purge);
    let (Some(from), Some(to)) = (Stage::named(from), Stage::named(to)) else {
        bail!(
            "journal {} names an unknown CA rotation stage",
            run.journal().display()
        );
    };
    let record = |step| Record::Ca {
        step,
        from: from.name().to_string(),
        to: to.name().to_string(),
        purge_sha256: purge,
    };
    match step {
        CaStep::Commit | CaStep::Abort => Ok(()),
        CaStep::Prepare => {
            remove_tree(&run.ca_new())?;
            Journal::open(&run.journal())?.append(&record(CaStep::Abort))
        }
        CaStep::Ready => {
            settle(root, run, from, to, purge)?;
            Journal::open(&run.journal())?.append(&record(CaStep::Commit))
        }
    }
}

/// The stages a run's committed change of `ca/` went from and to, if it made one, from its
/// journal's `records` read a line at a time.
pub(crate) fn committed(
    records: impl Iterator<Item = Result<Record>>,
) -> Result<Option<(Stage, Stage)>> {
    let mut last = None;
    for record in records {
        if let Record::Ca { step, from, to, .. } = record? {
            last = Some((step, from, to));
        }
    }
    match last {
        Some((CaStep::Commit, from, to)) => match (Stage::named(&from), Stage::named(&to)) {
            (Some(from), Some(to)) => Ok(Some((from, to))),
            _ => bail!("a journal names an unknown CA rotation stage"),
        },
        _ => Ok(None),
    }
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: both names stay, their directories swap, atomically.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "failed to exchange {} with {} (the filesystem must support \
                 renameat2 RENAME_EXCHANGE)",
                a.display(),
                b.display()
            )
        });
    }
    Ok(())
}

/// Removes a tree rekey built in a run's directory, if it is there.
fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => fsio::sync_dir(fsio::beside(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", dir.display())),
    }
}

/// Removes every regular file under `dir` whose bytes have the digest `key`: the copies of a
/// retired CA key that runs kept. Returns how many went.
pub(crate) fn purge_copies(dir: &Path, key: &Digest) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("failed to list {}", dir.display())),
    };
    let mut changed = false;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            removed += purge_copies(&path, key)?;
        } else if kind.is_file()
            && entry.metadata()?.len() <= fsio::MAX_CREDENTIAL_BYTES
            && fs::read(&path).is_ok_and(|bytes| Digest::of(&bytes) == *key)
        {
            fs::remove_file(&path)
                .with_context(|| format!("failed to remove {}", path.display()))?;
            removed += 1;
            changed = true;
        }
    }
    if changed {
        fsio::sync_dir(dir)?;
    }
    Ok(removed)
}
