//! What one step of the write protocol does in one identity's directory: back up its old files,
//! write the new ones beside them, rename them into place, or undo all that. Every operation in
//! the identity's directory goes through its handle ([`IdentityDir`]): the directory is another
//! user's and may be swapped for a link at any moment (docs/design.md §8). The order of the steps
//! and what the journal says of them are the parent module's.

use std::path::{Path, PathBuf};

use super::staged::Staged;
use crate::digest::Digest;
use crate::fsio::{self, IdentityDir, JudgedError, RootDir, TEMP_PREFIX};
use crate::names::IdentityId;
use crate::problem::Problem;
use crate::write::record::entries::Change;

/// Where one run keeps its backup of identity `id`'s file `name`.
pub(crate) fn backup_path(backup: &Path, id: &IdentityId, name: &str) -> PathBuf {
    crate::store::backup_of(backup, id).join(name)
}

/// How a run names the temporary file of each file it replaces: `.rekey-new.<run-id>.<file>`,
/// so that one no journal knows of is told apart from a writer at work. Runs of journal version
/// 1 named them `.rekey-new.<file>`; their journals are still replayed.
#[derive(Debug, Clone)]
pub(crate) struct Temps {
    run_id: Option<String>,
}

impl Temps {
    /// The temporary names of the run `run_id`.
    pub(crate) fn of(run_id: &str) -> Temps {
        Temps {
            run_id: Some(run_id.to_string()),
        }
    }

    /// The temporary names of the run whose journal starts with `version`.
    pub(super) fn of_journal(run_id: &str, version: u32) -> Temps {
        Temps {
            run_id: (version >= 2).then(|| run_id.to_string()),
        }
    }

    /// The temporary name of `file`.
    pub(crate) fn name(&self, file: &str) -> String {
        match &self.run_id {
            Some(id) => format!("{TEMP_PREFIX}{id}.{file}"),
            None => format!("{TEMP_PREFIX}{file}"),
        }
    }
}

/// Why an identity whose directory was moved away during its renames is not done.
pub(super) fn moved_away(s: &Staged) -> Problem {
    Problem::new(format!(
        "its directory {} was moved away while its files were replaced: the new files are in \
         that directory, wherever its owner moved it, and whatever is at its name now was not \
         rotated",
        s.dir.path().display()
    ))
}

/// Whether the identity's directory is still the one staged in: a node's owner may have moved
/// it away and put a link or another directory at its name. If so its temporary files and
/// backups go, and it stays wholly old: nothing is renamed in a directory no longer at its
/// place. (Moved after this check, the renames still happen in the directory staged in,
/// wherever it now is inside the fleet: never through what was put at its name.)
pub(super) fn in_place(fleet: &RootDir, s: &Staged) -> Result<(), NotWritten> {
    let now = fleet.identity(&s.id).map(|d| d.file_id());
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
pub(super) struct NotWritten {
    pub(super) reason: String,
    /// The filesystem is full: no identity after this one can be staged either.
    pub(super) no_space: bool,
}

impl NotWritten {
    fn new(reason: String, err: &std::io::Error) -> NotWritten {
        NotWritten {
            reason,
            no_space: fsio::is_no_space(err),
        }
    }
}

/// Links the old files into the backup and writes the new ones to temporary files. Creates
/// every file exclusively, so nothing that was already there (a live file, another backup, a
/// stray temporary file) is ever overwritten; on failure it removes exactly what it created.
pub(super) fn stage(s: &Staged, backup: &Path, temps: &Temps) -> Result<(), NotWritten> {
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
    let target_dir = crate::store::backup_of(backup, &s.id);
    fsio::create_private_dir(&target_dir).map_err(|e| {
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
        // The file judged, opened once: its backup and the new file's mode and owner come from
        // that one descriptor, whatever is put at its name meanwhile.
        let old = s.dir.open_judged(&f.name, &f.old).map_err(|e| match e {
            JudgedError::Changed(what) => NotWritten {
                reason: format!("{} {what}: left as it was", live.display()),
                no_space: false,
            },
            JudgedError::Io(e) => {
                NotWritten::new(format!("{} cannot be read: {e}", live.display()), &e)
            }
        })?;
        let entry = old.entry;
        let copy = backup_path(backup, &s.id, &f.name);
        s.dir
            .save_judged(&old, &copy)
            .map_err(|e| NotWritten::new(format!("cannot back up {}: {e}", live.display()), &e))?;
        saved.push(copy);
        let name = temps.name(&f.name);
        s.dir
            .create_exclusive(
                &name,
                f.bytes.expose(),
                entry.mode,
                Some((entry.uid, entry.gid)),
            )
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
pub(super) fn finish(
    dir: &IdentityDir,
    backup: &Path,
    temps: &Temps,
    change: &Change,
) -> Result<(), Problem> {
    for f in &change.files {
        let temp = temps.name(&f.name);
        match dir.entry(&temp) {
            Ok(Some(_)) => {
                if digest_of(dir, &temp) != Some(f.new_sha256) {
                    let undone = undo_renames(dir, backup, temps, change);
                    return Err(Problem::new(format!(
                        "{} does not hold what was staged: {undone}",
                        dir.shown(&temp).display()
                    )));
                }
                dir.rename(&temp, &f.name).map_err(|e| {
                    Problem::new(format!(
                        "cannot replace {}: {e}",
                        dir.shown(&f.name).display()
                    ))
                })?;
            }
            _ if digest_of(dir, &f.name) == Some(f.new_sha256) => {}
            _ => {
                let undone = undo_renames(dir, backup, temps, change);
                return Err(Problem::new(format!(
                    "{} was lost before it was renamed: {undone}",
                    dir.shown(&temp).display()
                )));
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
        let saved = backup_path(backup, &change.id, &f.name);
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

/// Removes an identity's temporary files, and each backup whose live file still holds the
/// same bytes (nothing was renamed yet): the identity stays wholly old and no copy of it is lost.
pub(super) fn discard(dir: &IdentityDir, backup: &Path, temps: &Temps, change: &Change) {
    for f in &change.files {
        let _ = dir.remove(&temps.name(&f.name));
        let saved = backup_path(backup, &change.id, &f.name);
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

/// What undoing an identity changed: the entries of its directory and of its backup's.
pub(super) fn undone_in<'a>(
    changed: &mut fsio::Changed<'a>,
    dir: &'a fsio::IdentityDir,
    id: &IdentityId,
    backup: &Path,
) {
    changed.dir(dir);
    changed.own_dir(crate::store::backup_of(backup, id));
}
