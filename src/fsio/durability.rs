//! How what a writing run changed is made durable: one `syncfs` of the filesystem where that
//! reaches it, else an `fsync` of every file and directory (docs/design.md §6, "Durability").
//! Which of the two a filesystem gets is decided here, from its `statfs` type.
//!
//! This module imports nothing of the crate: `fsio` and `fsio::identity` build on it.

use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};

/// Makes a directory's entries (renames, new files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync directory {}", dir.display()))
}

/// Flushes every pending write of the filesystem holding `path` (one `syncfs`): the batch
/// barrier of the write protocol where the filesystem has one ([`Durability::Syncfs`]), far
/// cheaper than an fsync per file and directory.
pub(crate) fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("failed to sync the filesystem of {}", path.display()));
    }
    #[cfg(feature = "crash-points")]
    if let Some(note) = syncfs_note() {
        // The power-loss tests' filesystem cannot see a syncfs: it is told of each one.
        File::open(&note)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("failed to note a syncfs in {}", note.display()))?;
    }
    Ok(())
}

/// The power-loss tests' hook (`crash-points` builds only): `REKEY_SYNCFS_NOTE=<file>` makes
/// every run take the [`Durability::Syncfs`] path, and `fsync` that file after each `syncfs`,
/// so that a filesystem which never sees a `syncfs` (FUSE) can stand in for one that does.
#[cfg(feature = "crash-points")]
fn syncfs_note() -> Option<std::path::PathBuf> {
    std::env::var_os("REKEY_SYNCFS_NOTE").map(Into::into)
}

/// How a writing run makes each phase of the write protocol durable (docs/design.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// One `syncfs` of the fleet's filesystem per phase.
    Syncfs,
    /// `fsync` of every file and every directory the phase changed: where `syncfs` never
    /// reaches the filesystem.
    EachFile,
}

/// `statfs` types whose `syncfs` does not reach what keeps the data: FUSE (the kernel never
/// forwards a `syncfs` to a FUSE server, virtiofs included) and 9p (no `sync_fs` at all).
const NO_SYNCFS: [i64; 2] = [0x6573_5546, 0x0102_1997];

impl Durability {
    /// The path a filesystem of `statfs` type `f_type` gets.
    pub fn of_type(f_type: i64) -> Durability {
        if NO_SYNCFS.contains(&f_type) {
            Durability::EachFile
        } else {
            Durability::Syncfs
        }
    }

    /// The path the filesystem holding `path` gets.
    pub fn of(path: &Path) -> io::Result<Durability> {
        let dir = File::open(path)?;
        Durability::of_fd(std::os::fd::AsFd::as_fd(&dir))
    }

    pub(super) fn of_fd(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Durability> {
        #[cfg(feature = "crash-points")]
        if syncfs_note().is_some() {
            return Ok(Durability::Syncfs);
        }
        let st = rustix::fs::fstatfs(fd)?;
        #[expect(clippy::useless_conversion, reason = "f_type is i32 on some targets")]
        Ok(Durability::of_type(i64::from(st.f_type)))
    }
}

