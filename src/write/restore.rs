//! Restoring, the work of `rollback`: each file a run replaced gets its backup back, through the
//! same journaled batches as a rotation, so a rollback can itself be interrupted, replayed and
//! rolled back. A file that no longer holds what the run wrote is left alone, and so is one whose
//! backup is missing or damaged: a restore never empties or removes a live file.

use std::path::PathBuf;

use super::journal::{self, FileChange, NewFile, Secret, Staged};
use super::work::{NotStaged, Work};
use crate::digest::Digest;
use crate::fsio::{self, IdentityDir, RootDir, Slot};
use crate::names::IdentityId;

/// The files of one identity that a run replaced.
pub(crate) type Replaced = Vec<FileChange>;

/// Puts back what the run `run_id` replaced, from its backup.
pub(crate) struct Restore<'a> {
    pub(crate) fleet: RootDir,
    pub(crate) run_id: &'a str,
    pub(crate) backup: PathBuf,
}

/// Whether a file is as the run left it, already back as before it, or changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Now {
    AsTheRunLeftIt,
    AsBefore,
    ChangedSince,
}

impl Restore<'_> {
    /// What the live file of `f` holds now (read through the identity's directory handle).
    pub(crate) fn now(&self, id: &IdentityId, f: &FileChange) -> Now {
        match self.fleet.identity(id) {
            Ok(dir) => Self::now_in(&dir, f),
            Err(_) => Now::ChangedSince,
        }
    }

    fn now_in(dir: &IdentityDir, f: &FileChange) -> Now {
        match dir.read(&f.name) {
            Slot::Present(bytes) if Digest::of(&bytes) == f.new_sha256 => Now::AsTheRunLeftIt,
            Slot::Present(bytes) if Digest::of(&bytes) == f.old_sha256 => Now::AsBefore,
            _ => Now::ChangedSince,
        }
    }
}

impl Work for Restore<'_> {
    type Item = Replaced;

    fn stage(&self, id: &IdentityId, files: &Replaced) -> Result<Staged, NotStaged> {
        let dir = super::rotation::open_identity(&self.fleet, id)?;
        let mut staged = Staged {
            id: id.clone(),
            dir,
            files: Vec::new(),
            details: Default::default(),
        };
        for f in files {
            if Self::now_in(&staged.dir, f) != Now::AsTheRunLeftIt {
                return Err(NotStaged::Skipped(format!(
                    "{} changed since run {}: left alone",
                    f.name, self.run_id
                )));
            }
            let saved = journal::backup_path(&self.backup, id, &f.name);
            let bytes = match fsio::read_credential(&saved) {
                Slot::Present(bytes) if Digest::of(&bytes) == f.old_sha256 => bytes,
                Slot::Present(_) => {
                    return Err(NotStaged::Failed(format!(
                        "backup {} is damaged: {} left as it is",
                        saved.display(),
                        f.name
                    )));
                }
                _ => {
                    return Err(NotStaged::Failed(format!(
                        "backup {} is missing or cannot be read: {} left as it is",
                        saved.display(),
                        f.name
                    )));
                }
            };
            staged.files.push(NewFile {
                name: f.name.clone(),
                old: f.new_sha256,
                bytes: Secret::new(bytes),
            });
        }
        Ok(staged)
    }
}
