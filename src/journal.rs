//! The write protocol and its journal: how a batch of identities goes from old files to new ones
//! so that, after a crash at any instant, each identity ends wholly old or wholly new.
//!
//! For each batch:
//! 1. `prepare` is journaled (and synced): which files of which identities will change, with the
//!    old and new digests. No secret is journaled; new contents exist only in temporary files.
//! 2. Each old file is hard-linked into the run's backup, each new one written to a temporary
//!    file beside it (`.rekey-new.<file>`), then one filesystem sync.
//! 3. `ready` is journaled: the identities whose temporary files are all durable.
//! 4. The temporary files are renamed over the old ones, then one filesystem sync.
//! 5. `commit` is journaled.
//!
//! Replay after a crash: a batch with `ready` but no `commit` is finished (the renames redone
//! from the temporary files); a batch with `prepare` but no `ready` is undone (temporary files and
//! backups removed: nothing was renamed yet). Either way the batch is closed in the journal.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsio;

/// The journal format version.
pub const VERSION: u32 = 1;

/// Prefix of the temporary file that holds a credential's replacement.
pub const TEMP_PREFIX: &str = ".rekey-new.";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    Start {
        version: u32,
        run_id: String,
        command: String,
        as_of: String,
    },
    Prepare {
        batch: u32,
        identities: Vec<Change>,
    },
    Ready {
        batch: u32,
        identities: Vec<String>,
    },
    Commit {
        batch: u32,
    },
    Abort {
        batch: u32,
    },
    End {
        recovered: bool,
    },
}

/// The files of one identity that a batch replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub node: String,
    pub service: String,
    pub files: Vec<FileChange>,
}

impl Change {
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    pub name: String,
    pub old_sha256: String,
    pub new_sha256: String,
}

/// Bytes that must not be printed: a new key, token or certificate on its way to disk.
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret([{} bytes elided])", self.0.len())
    }
}

/// A replacement ready to be committed: one identity's new files.
#[derive(Debug)]
pub struct Staged {
    pub node: String,
    pub service: String,
    pub dir: PathBuf,
    pub files: Vec<(String, [u8; 32], Secret)>,
}

impl Staged {
    fn change(&self) -> Change {
        Change {
            node: self.node.clone(),
            service: self.service.clone(),
            files: self
                .files
                .iter()
                .map(|(name, old, new)| FileChange {
                    name: name.clone(),
                    old_sha256: hex::encode(old),
                    new_sha256: hex::encode(Sha256::digest(&new.0)),
                })
                .collect(),
        }
    }
}

/// What happened to one staged identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Done(Change),
    Failed {
        node: String,
        service: String,
        reason: String,
    },
}

/// An open journal, appended to and synced record by record.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("failed to create journal {}", path.display()))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn open(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open journal {}", path.display()))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record and makes it durable. A record that cannot be written whole (the
    /// disk is full, say) is cut off again, so that a later record never follows a torn one.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("journal records always serialize");
        line.push('\n');
        let before = self.file.metadata().map(|m| m.len());
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if written.is_err()
            && let Ok(len) = before
        {
            let _ = self.file.set_len(len);
        }
        written.with_context(|| format!("failed to write journal {}", self.path.display()))
    }
}

/// Reads a journal. A last line cut short by a crash is ignored: it was never synced whole, so
/// the step it announced never began.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file =
        File::open(path).with_context(|| format!("failed to read journal {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("failed to read journal {}", path.display()))?;
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => anyhow::bail!("journal {} line {} is corrupt: {e}", path.display(), i + 1),
        }
    }
    Ok(records)
}

/// What replay must do for one unfinished batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// `ready` was journaled: finish these identities' renames.
    Finish { batch: u32, changes: Vec<Change> },
    /// Only `prepare`: remove temporary files and backups; nothing was renamed.
    Undo { batch: u32, changes: Vec<Change> },
}

/// The batches of a journal that were neither committed nor aborted (pure).
pub fn unfinished(records: &[Record]) -> Vec<Unfinished> {
    let mut out = Vec::new();
    for record in records {
        let Record::Prepare { batch, identities } = record else {
            continue;
        };
        let closed = records.iter().any(
            |r| matches!(r, Record::Commit { batch: b } | Record::Abort { batch: b } if b == batch),
        );
        if closed {
            continue;
        }
        let ready: Option<BTreeSet<&String>> = records.iter().find_map(|r| match r {
            Record::Ready {
                batch: b,
                identities,
            } if b == batch => Some(identities.iter().collect()),
            _ => None,
        });
        match ready {
            Some(ready) => {
                let (finish, undo): (Vec<Change>, Vec<Change>) = identities
                    .iter()
                    .cloned()
                    .partition(|c| ready.contains(&c.key()));
                if !undo.is_empty() {
                    out.push(Unfinished::Undo {
                        batch: *batch,
                        changes: undo,
                    });
                }
                out.push(Unfinished::Finish {
                    batch: *batch,
                    changes: finish,
                });
            }
            None => out.push(Unfinished::Undo {
                batch: *batch,
                changes: identities.clone(),
            }),
        }
    }
    out
}

/// Where one run keeps its backup of `node/service/name`.
pub fn backup_path(backup: &Path, node: &str, service: &str, name: &str) -> PathBuf {
    backup.join(node).join(service).join(name)
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{name}"))
}

/// Test-only crash points: `REKEY_CRASH_AT=<step>` kills the process with SIGKILL when the
/// write protocol reaches that step (`prepared`, `staged`, `ready`, `renaming`, `renamed`).
pub fn crash_point(step: &str) {
    if std::env::var_os("REKEY_CRASH_AT").is_some_and(|v| v == step) {
        // SAFETY: sending SIGKILL to ourselves; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Commits one batch through the protocol above. Identities that fail before their renames
/// are reported and left wholly old; the rest end wholly new.
pub fn commit_batch(
    journal: &mut Journal,
    batch: u32,
    root: &Path,
    backup: &Path,
    staged: Vec<Staged>,
) -> Result<Vec<Committed>> {
    if staged.is_empty() {
        return Ok(Vec::new());
    }
    let changes: Vec<Change> = staged.iter().map(Staged::change).collect();
    journal
        .append(&Record::Prepare {
            batch,
            identities: changes.clone(),
        })
        .map_err(|e| no_space(e, "not started", staged.len()))?;
    crash_point("prepared");
    let written: Vec<Result<(), NotWritten>> =
        staged.par_iter().map(|s| stage(s, backup)).collect();
    if let Some(full) = written
        .iter()
        .find_map(|w| w.as_ref().err().filter(|e| e.no_space))
    {
        // Every identity after this one would fail the same way: undo the whole batch and stop.
        abort(journal, batch, backup, &staged, &changes);
        return Err(NoSpace(format!(
            "no space left on the filesystem: {}; the batch of {} identities was undone",
            full.reason,
            staged.len()
        ))
        .into());
    }
    fsio::sync_filesystem(root)?;
    fsio::sync_filesystem(backup)?;
    crash_point("staged");
    let mut results = Vec::with_capacity(staged.len());
    let mut ready = Vec::new();
    let mut go = Vec::new();
    for ((s, change), outcome) in staged.iter().zip(changes).zip(written) {
        match outcome {
            Ok(()) => {
                ready.push(change.key());
                go.push((s, change));
            }
            Err(e) => {
                discard(&s.dir, backup, &change);
                results.push(Committed::Failed {
                    node: s.node.clone(),
                    service: s.service.clone(),
                    reason: e.reason,
                });
            }
        }
    }
    let marked = journal.append(&Record::Ready {
        batch,
        identities: ready,
    });
    if let Err(e) = marked {
        // Not ready, so nothing may be renamed: undo now rather than leave it to a replay.
        let (staged, changes): (Vec<&Staged>, Vec<Change>) = go.into_iter().unzip();
        let undone = staged.len();
        abort(journal, batch, backup, staged, &changes);
        return Err(no_space(e, "undone", undone));
    }
    crash_point("ready");
    let renamed: Vec<Result<(), String>> = go
        .par_iter()
        .map(|(s, change)| {
            crash_point("renaming");
            finish(&s.dir, backup, change)
        })
        .collect();
    fsio::sync_filesystem(root)?;
    crash_point("renamed");
    journal.append(&Record::Commit { batch })?;
    for ((s, change), outcome) in go.into_iter().zip(renamed) {
        results.push(match outcome {
            Ok(()) => Committed::Done(change),
            Err(reason) => Committed::Failed {
                node: s.node.clone(),
                service: s.service.clone(),
                reason,
            },
        });
    }
    Ok(results)
}

/// Why one identity could not be staged.
struct NotWritten {
    reason: String,
    /// The filesystem is full: no identity after this one can be staged either.
    no_space: bool,
}

impl NotWritten {
    fn new(reason: String, err: &std::io::Error) -> NotWritten {
        NotWritten {
            reason,
            no_space: fsio::is_no_space(err),
        }
    }
}

/// The filesystem filled up during a batch: the batch was undone and the run must stop.
#[derive(Debug)]
pub struct NoSpace(pub String);

impl std::fmt::Display for NoSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSpace {}

/// Links the old files into the backup and writes the new ones to temporary files.
fn stage(s: &Staged, backup: &Path) -> Result<(), NotWritten> {
    let target_dir = backup.join(&s.node).join(&s.service);
    std::fs::create_dir_all(&target_dir).map_err(|e| {
        let why = format!(
            "cannot create backup directory {}: {e}",
            target_dir.display()
        );
        NotWritten::new(why, &e)
    })?;
    for (name, _, bytes) in &s.files {
        let live = s.dir.join(name);
        let meta = std::fs::symlink_metadata(&live)
            .map_err(|e| NotWritten::new(format!("{} cannot be read: {e}", live.display()), &e))?;
        if !meta.is_file() {
            return Err(NotWritten {
                reason: format!("{} is no longer a regular file", live.display()),
                no_space: false,
            });
        }
        let saved = backup_path(backup, &s.node, &s.service, name);
        if let Err(e) = std::fs::hard_link(&live, &saved) {
            std::fs::copy(&live, &saved).map_err(|c| {
                let why = format!("cannot back up {} ({e}; copy: {c})", live.display());
                NotWritten::new(why, &c)
            })?;
        }
        let temp = temp_path(&s.dir, name);
        fsio::create_exclusive(
            &temp,
            &bytes.0,
            meta.mode() & 0o7777,
            Some((meta.uid(), meta.gid())),
        )
        .map_err(|e| NotWritten::new(format!("cannot write {}: {e}", temp.display()), &e))?;
    }
    Ok(())
}

/// Renames an identity's temporary files over the live ones. Where a temporary file is gone
/// (renamed before a crash), the live file must already hold the new content.
fn finish(dir: &Path, backup: &Path, change: &Change) -> Result<(), String> {
    for f in &change.files {
        let temp = temp_path(dir, &f.name);
        let live = dir.join(&f.name);
        match std::fs::symlink_metadata(&temp) {
            Ok(_) => {
                if digest_of(&temp).as_deref() != Some(f.new_sha256.as_str()) {
                    undo_renames(dir, backup, change);
                    return Err(format!(
                        "{} does not hold what was staged: identity restored",
                        temp.display()
                    ));
                }
                std::fs::rename(&temp, &live)
                    .map_err(|e| format!("cannot replace {}: {e}", live.display()))?;
            }
            Err(_) if digest_of(&live).as_deref() == Some(f.new_sha256.as_str()) => {}
            Err(_) => {
                undo_renames(dir, backup, change);
                return Err(format!(
                    "{} was lost before it was renamed: identity restored",
                    temp.display()
                ));
            }
        }
    }
    Ok(())
}

/// Puts back, from the backup, every file of `change` that already holds its new content.
fn undo_renames(dir: &Path, backup: &Path, change: &Change) {
    for f in &change.files {
        let live = dir.join(&f.name);
        let _ = std::fs::remove_file(temp_path(dir, &f.name));
        if digest_of(&live).as_deref() == Some(f.new_sha256.as_str()) {
            let saved = backup_path(backup, &change.node, &change.service, &f.name);
            let temp = temp_path(dir, &f.name);
            if std::fs::hard_link(&saved, &temp).is_ok() {
                let _ = std::fs::rename(&temp, &live);
            }
        }
    }
}

/// A journal write that failed because the filesystem is full becomes [`NoSpace`]: the run
/// stops there with what it has done so far, instead of failing as a whole.
fn no_space(err: anyhow::Error, batch_was: &str, identities: usize) -> anyhow::Error {
    if fsio::caused_by_no_space(&err) {
        NoSpace(format!(
            "no space left on the filesystem: {err:#}; the batch of {identities} identities was \
             {batch_was}"
        ))
        .into()
    } else {
        err
    }
}

/// Undoes a batch before its `ready` mark: every identity stays wholly old. The `abort` record
/// is best effort; without it, a replay undoes the batch again, which is harmless.
fn abort<'a>(
    journal: &mut Journal,
    batch: u32,
    backup: &Path,
    staged: impl IntoIterator<Item = &'a Staged>,
    changes: &[Change],
) {
    for (s, change) in staged.into_iter().zip(changes) {
        discard(&s.dir, backup, change);
    }
    let _ = journal.append(&Record::Abort { batch });
}

/// Removes an identity's temporary files and backup: it stays wholly old.
fn discard(dir: &Path, backup: &Path, change: &Change) {
    for f in &change.files {
        let _ = std::fs::remove_file(temp_path(dir, &f.name));
        let _ = std::fs::remove_file(backup_path(backup, &change.node, &change.service, &f.name));
    }
}

fn digest_of(path: &Path) -> Option<String> {
    match fsio::read_credential(path) {
        fsio::Slot::Present(bytes) => Some(hex::encode(Sha256::digest(bytes))),
        _ => None,
    }
}

/// Replays a run's journal: finishes or undoes every unfinished batch and closes the run.
/// Returns the identities finished (now wholly new) and undone (wholly old).
pub fn replay(
    journal_path: &Path,
    root: &Path,
    backup: &Path,
) -> Result<(Vec<Change>, Vec<Change>)> {
    let records = read(journal_path)?;
    let mut journal = Journal::open(journal_path)?;
    let nodes = root.join("nodes");
    let dir_of = |c: &Change| nodes.join(&c.node).join(&c.service);
    let (mut finished, mut undone) = (Vec::new(), Vec::new());
    for step in unfinished(&records) {
        match step {
            Unfinished::Undo { batch, changes } => {
                changes
                    .par_iter()
                    .for_each(|c| discard(&dir_of(c), backup, c));
                fsio::sync_filesystem(root)?;
                let whole = !records
                    .iter()
                    .any(|r| matches!(r, Record::Ready { batch: b, .. } if *b == batch));
                if whole {
                    journal.append(&Record::Abort { batch })?;
                }
                undone.extend(changes);
            }
            Unfinished::Finish { batch, changes } => {
                let results: Vec<_> = changes
                    .par_iter()
                    .map(|c| finish(&dir_of(c), backup, c))
                    .collect();
                fsio::sync_filesystem(root)?;
                journal.append(&Record::Commit { batch })?;
                for (c, r) in changes.into_iter().zip(results) {
                    if r.is_ok() {
                        finished.push(c)
                    } else {
                        undone.push(c)
                    }
                }
            }
        }
    }
    if !records.iter().any(|r| matches!(r, Record::End { .. })) {
        journal.append(&Record::End { recovered: true })?;
    }
    Ok((finished, undone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(node: &str) -> Change {
        Change {
            node: node.into(),
            service: "s".into(),
            files: vec![FileChange {
                name: "cert.pem".into(),
                old_sha256: "a".into(),
                new_sha256: "b".into(),
            }],
        }
    }

    #[test]
    fn replay_finishes_ready_batches_and_undoes_the_rest() {
        let start = Record::Start {
            version: 1,
            run_id: "r".into(),
            command: "rotate".into(),
            as_of: "t".into(),
        };
        let prepare = |batch, nodes: &[&str]| Record::Prepare {
            batch,
            identities: nodes.iter().map(|n| change(n)).collect(),
        };
        let ready = |batch, nodes: &[&str]| Record::Ready {
            batch,
            identities: nodes.iter().map(|n| format!("{n}/s")).collect(),
        };
        let cases: Vec<(&str, Vec<Record>, Vec<Unfinished>)> = vec![
            ("nothing begun", vec![start.clone()], vec![]),
            (
                "committed",
                vec![
                    start.clone(),
                    prepare(0, &["a"]),
                    ready(0, &["a"]),
                    Record::Commit { batch: 0 },
                ],
                vec![],
            ),
            (
                "aborted",
                vec![prepare(0, &["a"]), Record::Abort { batch: 0 }],
                vec![],
            ),
            (
                "prepared only: undo",
                vec![prepare(0, &["a", "b"])],
                vec![Unfinished::Undo {
                    batch: 0,
                    changes: vec![change("a"), change("b")],
                }],
            ),
            (
                "ready: finish",
                vec![prepare(0, &["a"]), ready(0, &["a"])],
                vec![Unfinished::Finish {
                    batch: 0,
                    changes: vec![change("a")],
                }],
            ),
            (
                "ready for some: finish those, undo the others",
                vec![prepare(0, &["a", "b"]), ready(0, &["b"])],
                vec![
                    Unfinished::Undo {
                        batch: 0,
                        changes: vec![change("a")],
                    },
                    Unfinished::Finish {
                        batch: 0,
                        changes: vec![change("b")],
                    },
                ],
            ),
            (
                "second batch interrupted",
                vec![
                    prepare(0, &["a"]),
                    ready(0, &["a"]),
                    Record::Commit { batch: 0 },
                    prepare(1, &["b"]),
                ],
                vec![Unfinished::Undo {
                    batch: 1,
                    changes: vec![change("b")],
                }],
            ),
        ];
        for (name, records, want) in cases {
            assert_eq!(unfinished(&records), want, "{name}");
        }
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_torn_middle_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let good = serde_json::to_string(&Record::Commit { batch: 3 }).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"op\":\"prep")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![Record::Commit { batch: 3 }]);
        std::fs::write(&path, format!("{{\"op\":\"prep\n{good}\n")).unwrap();
        assert!(read(&path).is_err());
    }
}
