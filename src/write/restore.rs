//! Restoring, the work of `rollback`: each file a run replaced gets its backup back, through the
//! same journaled batches as a rotation, so a rollback can itself be interrupted, replayed and
//! rolled back. A file that no longer holds what the run wrote is left alone, and so is one whose
//! backup is missing or damaged: a restore never empties or removes a live file.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::journal::{self, FileChange, NewFile, Secret, Staged};
use super::record::done::Done;
use super::record::run_report::{IdentityReport, Outcome};
use super::work::{NotStaged, Work};
use crate::digest::Digest;
use crate::fsio::{self, IdentityDir, RootDir, Slot};
use crate::names::IdentityId;
use crate::store::RunDir;

/// The files of one identity that a run replaced.
pub(crate) type Replaced = Vec<FileChange>;

/// What a run replaced, identity by identity, in (node, service) order, from its report: read a
/// line at a time from the layout rekey writes, so that a rollback holds one identity of it at
/// a time; a report in another layout (written by hand, compact) is read whole, as before.
pub(crate) struct Replacements {
    run_id: String,
    lines: Lines,
}

enum Lines {
    Streamed(Done),
    Held(std::vec::IntoIter<IdentityReport>),
}

impl Replacements {
    /// The files run `run` replaced, from the start of its report.
    pub(crate) fn open(run: &RunDir) -> Result<Replacements> {
        let lines = match Done::open(run) {
            Ok(Some(done)) => Lines::Streamed(done),
            // No report to open, or not in rekey's layout: read whole, which says what is
            // wrong with it, or sorts a report in another order.
            Ok(None) | Err(_) => {
                let mut lines = super::record::history::read_report(run)?.identities;
                lines.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
                if let Some(twice) = lines
                    .windows(2)
                    .find(|w| (&w[0].node, &w[0].service) == (&w[1].node, &w[1].service))
                {
                    let (node, service) = (&twice[0].node, &twice[0].service);
                    bail!("report of run {} names {node}/{service} twice", run.id());
                }
                Lines::Held(lines.into_iter())
            }
        };
        Ok(Replacements {
            run_id: run.id().to_string(),
            lines,
        })
    }

    /// The next identity whose files the run replaced, with those files; `None` at the end.
    /// A name that is not an identity's (a damaged report) is refused.
    pub(crate) fn next(&mut self) -> Result<Option<(IdentityId, Replaced)>> {
        loop {
            let line = match &mut self.lines {
                Lines::Streamed(done) => done.next_identity()?,
                Lines::Held(lines) => lines.next(),
            };
            let Some(line) = line else {
                return Ok(None);
            };
            if line.outcome != Outcome::Done || line.files.is_empty() {
                continue;
            }
            let valid = line
                .id()
                .filter(|_| line.files.iter().all(|f| crate::names::is_valid(&f.name)));
            let Some(id) = valid else {
                bail!(
                    "report of run {} names an invalid path ({}/{})",
                    self.run_id,
                    line.node,
                    line.service
                );
            };
            return Ok(Some((id, line.files)));
        }
    }
}

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

    /// Whether some file of `files` no longer holds what it held before the run: the
    /// identity has something to put back (or to report left alone).
    pub(crate) fn changed(&self, id: &IdentityId, files: &[FileChange]) -> bool {
        files.iter().any(|f| self.now(id, f) != Now::AsBefore)
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
