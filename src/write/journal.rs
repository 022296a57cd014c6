//! The write protocol and its journal: how a batch of identities goes from old files to new ones
//! so that, after a crash at any instant, each identity ends wholly old or wholly new.
//!
//! For each batch:
//! 1. `prepare` is journaled (and synced): which files of which identities will change, with the
//!    old and new digests. No secret is journaled; new contents exist only in temporary files.
//! 2. Each old file is hard-linked into the run's backup, each new one written to a temporary
//!    file beside it (`.rekey-new.<run-id>.<file>`), then one filesystem sync.
//! 3. `ready` is journaled: the identities whose temporary files are all durable.
//! 4. The temporary files are renamed over the old ones, then one filesystem sync.
//! 5. `commit` is journaled.
//!
//! Replay after a crash: a batch with `ready` but no `commit` is finished (the renames redone
//! from the temporary files); a batch with `prepare` but no `ready` is undone (temporary files and
//! backups removed: nothing was renamed yet). Either way the batch is closed in the journal.
//!
//! Every step in an identity's directory is done through its handle ([`IdentityDir`]): the
//! directory is another user's, and may be swapped for a link at any moment (docs/design.md §8).

use std::path::{Path, PathBuf};

use super::hooks::HookCall;
use super::report::Details;
use crate::digest::Digest;
use crate::fsio::{self, IdentityDir, RootDir};
use anyhow::Result;
use rayon::prelude::*;

mod records;

pub use records::{
    Change, FileChange, Journal, Pending, Record, Unfinished, VERSION, committed, pending_hooks,
    read, unfinished,
};

use crate::fsio::TEMP_PREFIX;

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
    /// The identity's directory, as opened when it was staged: every later step works in it.
    pub dir: IdentityDir,
    pub files: Vec<NewFile>,
    /// What the new credentials are, for the report (no secret).
    pub details: Details,
}

/// One file of a replacement: its name, the digest of the file it replaces, its new bytes.
#[derive(Debug)]
pub struct NewFile {
    pub name: String,
    pub old: Digest,
    pub bytes: Secret,
}

impl Staged {
    fn change(&self) -> Change {
        Change {
            node: self.node.clone(),
            service: self.service.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileChange {
                    name: f.name.clone(),
                    old_sha256: f.old,
                    new_sha256: Digest::of(&f.bytes.0),
                })
                .collect(),
        }
    }
}

/// What happened to one staged identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per identity of a batch, made once and moved into its report line"
)]
pub enum Committed {
    /// Wholly new: what changed, the report's details, and the directory it was done in
    /// (device and inode: its deploy hooks run there and nowhere else).
    Done(Change, Details, fsio::FileId),
    Failed {
        node: String,
        service: String,
        reason: String,
    },
}

/// Where one run keeps its backup of `node/service/name`.
pub fn backup_path(backup: &Path, node: &str, service: &str, name: &str) -> PathBuf {
    backup.join(node).join(service).join(name)
}

/// How a run names the temporary file of each file it replaces: `.rekey-new.<run-id>.<file>`,
/// so that one no journal knows of is told apart from a writer at work. Runs of journal version
/// 1 named them `.rekey-new.<file>`; their journals are still replayed.
#[derive(Debug, Clone)]
pub struct Temps {
    run_id: Option<String>,
}

impl Temps {
    /// The temporary names of the run `run_id`.
    pub fn of(run_id: &str) -> Temps {
        Temps {
            run_id: Some(run_id.to_string()),
        }
    }

    /// The temporary names of the run whose journal starts with `version`.
    fn of_journal(run_id: &str, version: u32) -> Temps {
        Temps {
            run_id: (version >= 2).then(|| run_id.to_string()),
        }
    }

    /// The temporary name of `file`.
    pub fn name(&self, file: &str) -> String {
        match &self.run_id {
            Some(id) => format!("{TEMP_PREFIX}{id}.{file}"),
            None => format!("{TEMP_PREFIX}{file}"),
        }
    }
}

/// Crash points for the crash and race tests, compiled only with the `crash-points` feature
/// (never into a release build): `REKEY_CRASH_AT=<step>` kills the process with SIGKILL when the
/// write protocol reaches that step (`prepared`, `staged`, `ready`, `renaming`, `renamed`);
/// `REKEY_PAUSE_AT=<step>` with `REKEY_PAUSE_FILE=<path>` creates that file there and waits (up
/// to a minute) until someone removes it, so that a test can change the fleet at that instant.
#[cfg(feature = "crash-points")]
pub(super) fn crash_point(step: &str) {
    if std::env::var_os("REKEY_CRASH_AT").is_some_and(|v| v == step) {
        // SAFETY: sending SIGKILL to ourselves; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    if std::env::var_os("REKEY_PAUSE_AT").is_some_and(|v| v == step)
        && let Some(file) = std::env::var_os("REKEY_PAUSE_FILE")
        && std::fs::write(&file, step).is_ok()
    {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while Path::new(&file).exists() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(not(feature = "crash-points"))]
pub(super) fn crash_point(_step: &str) {}

/// Commits one batch through the protocol above. Identities that fail before their renames
/// are reported and left wholly old; the rest end wholly new.
pub fn commit_batch(
    journal: &mut Journal,
    batch: u32,
    fleet: &RootDir,
    (backup, temps): (&Path, &Temps),
    staged: Vec<Staged>,
    hooks: &[HookCall],
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
        staged.par_iter().map(|s| stage(s, backup, temps)).collect();
    if let Some(full) = written
        .iter()
        .find_map(|w| w.as_ref().err().filter(|e| e.no_space))
    {
        // Every identity after this one would fail the same way: undo the whole batch and stop.
        // The identities that failed to stage removed their own files already.
        let (ok, ok_changes): (Vec<&Staged>, Vec<Change>) = staged
            .iter()
            .zip(&changes)
            .zip(&written)
            .filter(|(_, w)| w.is_ok())
            .map(|((s, c), _)| (s, c.clone()))
            .unzip();
        abort(journal, batch, (backup, temps), ok, &ok_changes);
        return Err(NoSpace(format!(
            "no space left on the filesystem: {}; the batch of {} was undone",
            full.reason,
            crate::count::count(staged.len(), "identity", "identities")
        ))
        .into());
    }
    let root = fleet.path();
    fsio::sync_filesystem(root)?;
    fsio::sync_filesystem(backup)?;
    crash_point("staged");
    let mut results = Vec::with_capacity(staged.len());
    let mut ready = Vec::new();
    let mut go = Vec::new();
    for ((s, change), outcome) in staged.iter().zip(changes).zip(written) {
        let outcome = outcome.and_then(|()| {
            in_place(fleet, s).inspect_err(|_| discard(&s.dir, backup, temps, &change))
        });
        match outcome {
            Ok(()) => {
                ready.push(change.key());
                go.push((s, change));
            }
            Err(e) => {
                // `stage` (or `discard`) removed what it had created; anything else there is not
                // this run's.
                results.push(Committed::Failed {
                    node: s.node.clone(),
                    service: s.service.clone(),
                    reason: e.reason,
                });
            }
        }
    }
    // The hooks of what will be renamed are journaled first: once a file is in place, its
    // hook is pending until it has run.
    let calls: Vec<HookCall> = hooks
        .iter()
        .filter(|c| {
            let key = format!(
                "{}/{}",
                c.node.as_deref().unwrap_or(""),
                c.service.as_deref().unwrap_or("")
            );
            ready.contains(&key)
        })
        .cloned()
        .collect();
    let marked = if calls.is_empty() {
        Ok(())
    } else {
        journal.append(&Record::Hooks {
            batch: Some(batch),
            calls: calls.clone(),
        })
    };
    let marked = marked.and_then(|()| {
        journal.append(&Record::Ready {
            batch,
            identities: ready,
        })
    });
    if let Err(e) = marked {
        // Not ready, so nothing may be renamed: undo now rather than leave it to a replay.
        let (staged, changes): (Vec<&Staged>, Vec<Change>) = go.into_iter().unzip();
        let undone = staged.len();
        abort(journal, batch, (backup, temps), staged, &changes);
        return Err(no_space(e, "undone", undone));
    }
    crash_point("ready");
    let renamed: Vec<Result<(), String>> = go
        .par_iter()
        .map(|(s, change)| {
            crash_point("renaming");
            finish(&s.dir, backup, temps, change)?;
            // Moved away by its owner meanwhile (the renames followed the directory, never a
            // link): what is at its name now was not rotated, and the run says so.
            in_place(fleet, s).map_err(|_| moved_away(s))
        })
        .collect();
    fsio::sync_filesystem(root)?;
    crash_point("renamed");
    let left_old = go.iter().zip(&renamed).filter(|(_, r)| r.is_err());
    for ((s, _), _) in left_old {
        drop_hooks(journal, &calls, &s.node, &s.service)?;
    }
    journal.append(&Record::Commit { batch })?;
    crash_point("committed");
    for ((s, change), outcome) in go.into_iter().zip(renamed) {
        results.push(match outcome {
            Ok(()) => Committed::Done(change, s.details.clone(), s.dir.file_id()),
            Err(reason) => Committed::Failed {
                node: s.node.clone(),
                service: s.service.clone(),
                reason,
            },
        });
    }
    Ok(results)
}

/// Closes the deploy hook calls journaled for `node/service` when it ended wholly old after all
/// (its renames failed, or a replay could not finish them): hooks run only for an identity a run
/// changed. Journaled before the batch's `commit`, so that none is ever pending.
fn drop_hooks(journal: &mut Journal, calls: &[HookCall], node: &str, service: &str) -> Result<()> {
    let own = calls
        .iter()
        .filter(|c| c.node.as_deref() == Some(node) && c.service.as_deref() == Some(service));
    for c in own {
        journal.append(&Record::HookDropped {
            call: c.call,
            reason: "its identity was not changed at its place, so it has nothing to deploy"
                .to_string(),
        })?;
    }
    Ok(())
}

/// Why an identity whose directory was moved away during its renames is not done.
fn moved_away(s: &Staged) -> String {
    format!(
        "its directory {} was moved away while its files were replaced: the new files are in \
         that directory, wherever its owner moved it, and whatever is at its name now was not \
         rotated",
        s.dir.path().display()
    )
}

/// Whether the identity's directory is still the one staged in: a node's owner may have moved
/// it away and put a link or another directory at its name. If so its temporary files and
/// backups go, and it stays wholly old: nothing is renamed in a directory no longer at its
/// place. (Moved after this check, the renames still happen in the directory staged in,
/// wherever it now is inside the fleet: never through what was put at its name.)
fn in_place(fleet: &RootDir, s: &Staged) -> Result<(), NotWritten> {
    let now = fleet.identity(&s.node, &s.service).map(|d| d.file_id());
    if now.is_ok_and(|id| id == s.dir.file_id()) {
        return Ok(());
    }
    Err(NotWritten {
        reason: format!(
            "its directory {} was moved or replaced while the run worked on it (a link or \
             another directory is there now): left as it was",
            s.dir.path().display()
        ),
        no_space: false,
    })
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

/// Links the old files into the backup and writes the new ones to temporary files. Creates
/// every file exclusively, so nothing that was already there (a live file, another backup, a
/// stray temporary file) is ever overwritten; on failure it removes exactly what it created.
fn stage(s: &Staged, backup: &Path, temps: &Temps) -> Result<(), NotWritten> {
    let mut saved = Vec::new();
    let mut temp = Vec::new();
    let result = stage_files(s, backup, temps, &mut saved, &mut temp);
    if result.is_err() {
        for name in temp.iter().rev() {
            let _ = s.dir.remove(name);
        }
        for path in saved.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn stage_files(
    s: &Staged,
    backup: &Path,
    temps: &Temps,
    saved: &mut Vec<PathBuf>,
    temp: &mut Vec<String>,
) -> Result<(), NotWritten> {
    let target_dir = backup.join(&s.node).join(&s.service);
    super::state::create_private_dir(&target_dir).map_err(|e| {
        let why = format!(
            "cannot create backup directory {}: {e:#}",
            target_dir.display()
        );
        let no_space = fsio::caused_by_no_space(&e);
        NotWritten {
            reason: why,
            no_space,
        }
    })?;
    for f in &s.files {
        let live = s.dir.shown(&f.name);
        let entry = s
            .dir
            .entry(&f.name)
            .map_err(|e| NotWritten::new(format!("{} cannot be read: {e}", live.display()), &e))?;
        let Some(entry) = entry.filter(|e| e.is_file) else {
            return Err(NotWritten {
                reason: format!("{} is no longer a regular file", live.display()),
                no_space: false,
            });
        };
        let copy = backup_path(backup, &s.node, &s.service, &f.name);
        s.dir
            .save_to(&f.name, &entry, &copy)
            .map_err(|e| NotWritten::new(format!("cannot back up {}: {e}", live.display()), &e))?;
        saved.push(copy);
        let name = temps.name(&f.name);
        s.dir
            .create_exclusive(&name, &f.bytes.0, entry.mode, Some((entry.uid, entry.gid)))
            .map_err(|e| {
                let shown = s.dir.shown(&name);
                NotWritten::new(format!("cannot write {}: {e}", shown.display()), &e)
            })?;
        temp.push(name);
    }
    Ok(())
}

/// Renames an identity's temporary files over the live ones. Where a temporary file is gone
/// (renamed before a crash), the live file must already hold the new content.
fn finish(dir: &IdentityDir, backup: &Path, temps: &Temps, change: &Change) -> Result<(), String> {
    for f in &change.files {
        let temp = temps.name(&f.name);
        match dir.entry(&temp) {
            Ok(Some(_)) => {
                if digest_of(dir, &temp) != Some(f.new_sha256) {
                    let undone = undo_renames(dir, backup, temps, change);
                    return Err(format!(
                        "{} does not hold what was staged: {undone}",
                        dir.shown(&temp).display()
                    ));
                }
                dir.rename(&temp, &f.name)
                    .map_err(|e| format!("cannot replace {}: {e}", dir.shown(&f.name).display()))?;
            }
            _ if digest_of(dir, &f.name) == Some(f.new_sha256) => {}
            _ => {
                let undone = undo_renames(dir, backup, temps, change);
                return Err(format!(
                    "{} was lost before it was renamed: {undone}",
                    dir.shown(&temp).display()
                ));
            }
        }
    }
    Ok(())
}

/// Puts back, from the backup, every file of `change` that already holds its new content, and
/// says what it did. A file whose backup is missing or does not hold the old content is left
/// as it is, and named: a restore never empties or removes a live file.
fn undo_renames(dir: &IdentityDir, backup: &Path, temps: &Temps, change: &Change) -> String {
    let mut left = Vec::new();
    for f in &change.files {
        let temp = temps.name(&f.name);
        let _ = dir.remove(&temp);
        if digest_of(dir, &f.name) != Some(f.new_sha256) {
            continue;
        }
        let saved = backup_path(backup, &change.node, &change.service, &f.name);
        let restored = digest_at(&saved) == Some(f.old_sha256)
            && dir.link_from(&saved, &temp).is_ok()
            && dir.rename(&temp, &f.name).is_ok();
        if !restored {
            let _ = dir.remove(&temp);
            left.push(format!(
                "{} left as it is (its backup {} is missing or damaged)",
                f.name,
                saved.display()
            ));
        }
    }
    if left.is_empty() {
        "identity restored".to_string()
    } else {
        left.join("; ")
    }
}

/// A journal write that failed because the filesystem is full becomes [`NoSpace`]: the run
/// stops there with what it has done so far, instead of failing as a whole.
fn no_space(err: anyhow::Error, batch_was: &str, identities: usize) -> anyhow::Error {
    if fsio::caused_by_no_space(&err) {
        NoSpace(format!(
            "no space left on the filesystem: {err:#}; the batch of {} was {batch_was}",
            crate::count::count(identities, "identity", "identities")
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
    (backup, temps): (&Path, &Temps),
    staged: impl IntoIterator<Item = &'a Staged>,
    changes: &[Change],
) {
    for (s, change) in staged.into_iter().zip(changes) {
        discard(&s.dir, backup, temps, change);
    }
    let _ = journal.append(&Record::Abort { batch });
}

/// Removes an identity's temporary files, and each backup whose live file still holds the
/// same bytes (nothing was renamed yet): the identity stays wholly old and no copy of it is lost.
fn discard(dir: &IdentityDir, backup: &Path, temps: &Temps, change: &Change) {
    for f in &change.files {
        let _ = dir.remove(&temps.name(&f.name));
        let saved = backup_path(backup, &change.node, &change.service, &f.name);
        if digest_of(dir, &f.name) == Some(f.old_sha256) {
            let _ = std::fs::remove_file(saved);
        }
    }
}

/// The digest of the entry `name` of `dir`, when it is a regular file that could be read.
fn digest_of(dir: &IdentityDir, name: &str) -> Option<Digest> {
    match dir.read(name) {
        fsio::Slot::Present(bytes) => Some(Digest::of(&bytes)),
        _ => None,
    }
}

/// The digest of a file of rekey's own state.
fn digest_at(path: &Path) -> Option<Digest> {
    match fsio::read_credential(path) {
        fsio::Slot::Present(bytes) => Some(Digest::of(&bytes)),
        _ => None,
    }
}

/// Replays a run's journal: finishes or undoes every unfinished batch and closes the run.
/// Returns the identities finished (now wholly new) and undone (wholly old). An identity whose
/// directory can no longer be opened beneath the root without following a link is neither: it
/// is reported as undone, and nothing is done outside the fleet.
pub fn replay(
    journal_path: &Path,
    root: &Path,
    backup: &Path,
) -> Result<(Vec<Change>, Vec<Change>)> {
    let records = read(journal_path)?;
    let temps = records
        .iter()
        .find_map(|r| match r {
            Record::Start {
                version, run_id, ..
            } => Some(Temps::of_journal(run_id, *version)),
            _ => None,
        })
        .unwrap_or(Temps { run_id: None });
    let mut journal = Journal::open(journal_path)?;
    let fleet = RootDir::open(root)
        .map_err(|e| anyhow::anyhow!("failed to open fleet root {}: {e}", root.display()))?;
    let open = |c: &Change| fleet.identity(&c.node, &c.service).ok();
    let (mut finished, mut undone) = (Vec::new(), Vec::new());
    for step in unfinished(&records) {
        match step {
            Unfinished::Undo { batch, changes } => {
                changes.par_iter().for_each(|c| {
                    if let Some(dir) = open(c) {
                        discard(&dir, backup, &temps, c)
                    }
                });
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
                let results: Vec<bool> = changes
                    .par_iter()
                    .map(|c| open(c).is_some_and(|dir| finish(&dir, backup, &temps, c).is_ok()))
                    .collect();
                fsio::sync_filesystem(root)?;
                let calls: Vec<HookCall> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Hooks {
                            batch: Some(b),
                            calls,
                        } if *b == batch => Some(calls.iter().cloned()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                for (c, _) in changes.iter().zip(&results).filter(|(_, ok)| !**ok) {
                    drop_hooks(&mut journal, &calls, &c.node, &c.service)?;
                }
                journal.append(&Record::Commit { batch })?;
                for (c, ok) in changes.into_iter().zip(results) {
                    if ok { finished.push(c) } else { undone.push(c) }
                }
            }
        }
    }
    if !records.iter().any(|r| matches!(r, Record::End { .. })) {
        journal.append(&Record::End { recovered: true })?;
    }
    Ok((finished, undone))
}
