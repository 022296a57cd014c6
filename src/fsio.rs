//! File I/O at the edge of the tool: bounded, link-refusing reads of credential files and the one
//! atomic write path every output goes through.
//!
//! This module and its children own every `open` of a fleet file: the reads and the open
//! directory in `fsio::dir`, the handles writes below `nodes/` go through in `fsio::identity`.
//! They must not interpret contents: callers get bytes or a stated reason why there are none.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

mod dir;
mod durability;
mod identity;

pub use dir::{Dir, FileId, Slot, read_credential};
pub(crate) use dir::{MAX_CREDENTIAL_BYTES, NOT_READABLE};
#[cfg_attr(
    not(feature = "testkit"),
    expect(unused_imports, reason = "the power-loss tests use it")
)]
pub use durability::Durability;
pub(crate) use durability::sync_dir;
pub(crate) use identity::{Changed, IdentityDir, JudgedError, RootDir};

/// Prefix of the temporary file that holds a credential's replacement while a writing run
/// stages it (`.rekey-new.cert.pem`); readers that see one wait for the rename.
pub(crate) const TEMP_PREFIX: &str = ".rekey-new.";

/// Prefix of the temporary file [`write_atomic_with`] writes beside its target.
pub(crate) const ATOMIC_PREFIX: &str = ".rekey-tmp-";

/// Removes the temporary files an interrupted [`write_atomic_with`] left in `dir`.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
        if entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(ATOMIC_PREFIX.as_bytes())
        {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("failed to remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Replaces `path` atomically with what `fill` writes (streamed, never held whole in memory): a
/// new temporary file in the same directory (created exclusively, with `mode`), written, synced,
/// renamed over `path`, then the directory synced. A symbolic link at `path` is replaced by the
/// rename, never written through.
pub(crate) fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    write_atomic_like(path, &Like::New(mode), fill)
}

/// What a file written by [`write_atomic_like`] is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Like {
    /// A new file, with this mode (less the umask).
    New(u32),
    /// The file it replaces: its permission bits exactly, and its owner and group where the
    /// process may give them (root).
    Replaced { mode: u32, uid: u32, gid: u32 },
}

/// [`write_atomic_with`], the new file's mode (and owner) as `like` says.
pub(crate) fn write_atomic_like(
    path: &Path,
    like: &Like,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let dir = beside(path);
    let mut tmp = match *like {
        Like::New(mode) => temporary_in(dir, mode)?,
        Like::Replaced { mode, uid, gid } => {
            let tmp = temporary_in(dir, 0o600)?;
            let file = tmp.as_file();
            use std::os::fd::AsRawFd;
            // SAFETY: a valid descriptor. Only root may give a file away; for anyone else the
            // file stays theirs, as any file they write would.
            if unsafe { libc::geteuid() } == 0 {
                unsafe { libc::fchown(file.as_raw_fd(), uid, gid) };
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("failed to write {}", path.display()))?;
            tmp
        }
    };
    {
        let mut w = io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        fill(&mut w)
            .and_then(|()| w.flush())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("failed to write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|err| err.error)
        .with_context(|| format!("failed to replace {}", path.display()))?;
    sync_dir(dir)
}

/// Whether a new file can be made in `dir`, as [`write_atomic_with`] will make one: tried with an
/// unnamed file (`O_TMPFILE`, gone when closed, whatever happens to the process), or where the
/// filesystem has none, a named one removed at once.
pub(crate) fn can_create_in(dir: &Path) -> io::Result<()> {
    let unnamed = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match unnamed {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            tempfile::Builder::new()
                .prefix(ATOMIC_PREFIX)
                .tempfile_in(dir)
                .map(drop)
        }
        Err(err) => Err(err),
    }
}

/// The fleet root at `root` in its canonical form (absolute, links and `..` resolved): what every
/// command works on and shows, made here only.
pub(crate) fn fleet_root(root: &Path) -> Result<std::path::PathBuf> {
    std::fs::canonicalize(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))
}

/// The directory `path` is written in.
pub(crate) fn beside(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A new temporary file of [`write_atomic_with`]'s in `dir`, created exclusively with `mode`.
fn temporary_in(dir: &Path, mode: u32) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(ATOMIC_PREFIX)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))
}

/// Creates `dir` and the directories above it that are missing, each 0700 (what the umask
/// leaves of it can only be narrower): rekey's own state.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))
}

/// Whether an I/O error says the filesystem is full (or the user's quota is).
pub(crate) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether any cause in `err`'s chain says the filesystem is full.
pub(crate) fn caused_by_no_space(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<io::Error>().is_some_and(is_no_space))
}

/// Makes the new entry of `path` in its directory durable, and the entries of the
/// directories above it up to `top` (each new directory's name in its parent): what a run's
/// own state needs once, where a phase's barrier does not reach it.
pub(crate) fn sync_dirs_up_to(path: &Path, top: &Path) -> Result<()> {
    let mut dir = beside(path);
    loop {
        sync_dir(dir)?;
        if dir == top || !dir.starts_with(top) {
            return Ok(());
        }
        dir = beside(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn filesystems_whose_syncfs_does_not_reach_them_get_an_fsync_of_each_file() {
        let table = [
            ("fuse (and virtiofs)", 0x6573_5546, Durability::EachFile),
            ("9p", 0x0102_1997, Durability::EachFile),
            ("ext4", 0xef53, Durability::Syncfs),
            ("xfs", 0x5846_5342, Durability::Syncfs),
            ("btrfs", 0x9123_683e, Durability::Syncfs),
            ("tmpfs", 0x0102_1994, Durability::Syncfs),
            ("nfs", 0x6969, Durability::Syncfs),
        ];
        for (name, f_type, path) in table {
            assert_eq!(Durability::of_type(f_type), path, "{name}");
        }
    }

    #[test]
    fn atomic_write_replaces_a_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"old").unwrap();
        let out = dir.path().join("out");
        symlink(&target, &out).unwrap();
        write_atomic_with(&out, 0o600, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        let meta = std::fs::symlink_metadata(&out).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2);
    }
}
