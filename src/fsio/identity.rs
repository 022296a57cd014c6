//! An identity's directory as a handle: opened from the fleet root without following a link at
//! any step, and every later read, create, link, rename and removal done relative to it.
//!
//! Everything under `nodes/` belongs to users rekey does not trust (docs/design.md §8): a node's
//! owner can swap a service directory for a link, or for another directory, between any two
//! system calls. A path walked again at each step would then lead outside the fleet. A handle
//! stays on the directory it was opened on, wherever that directory is moved; a swap makes the
//! next open fail, never succeed somewhere else.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use anyhow::{Context, Result};

use super::dir::{Dir, FileId, Slot, read_opened, write_exclusive};
use super::durability::{Durability, sync_filesystem};
use crate::digest::Digest;
use crate::names::IdentityId;
use zeroize::Zeroizing;

/// The fleet root, opened once per writing run: identities are opened beneath it.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
    durability: Durability,
    /// The device of the root's filesystem: one `syncfs` there covers what lives on it.
    dev: u64,
}

impl RootDir {
    /// Opens the fleet root `path` (canonical, and checked as trusted by the caller).
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())?;
        let durability = Durability::of_fd(fd.as_fd())?;
        let dev = rustix::fs::fstat(&fd)?.st_dev;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
            durability,
            dev,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same directory.
    pub(crate) fn try_clone(&self) -> io::Result<RootDir> {
        Ok(RootDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
            durability: self.durability,
            dev: self.dev,
        })
    }

    /// Opens `nodes/<node>/<service>` beneath the root, following no link at any step and never
    /// leaving the root: `openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` where the kernel
    /// has it, else one `O_NOFOLLOW | O_DIRECTORY` open per component. An [`IdentityId`]'s names
    /// are valid (no `/`, no `..`).
    pub(crate) fn identity(&self, id: &IdentityId) -> io::Result<IdentityDir> {
        let rel = id.relative();
        let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let fd = match rustix::fs::openat2(&self.fd, &rel, dir_flags(), Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
                // One component at a time, none followed if it is a link.
                let mut parts = rel.components().map(|c| c.as_os_str());
                let first = parts.next().expect("an identity's path has components");
                let mut fd = rustix::fs::openat(&self.fd, first, dir_flags(), Mode::empty())?;
                for part in parts {
                    fd = rustix::fs::openat(&fd, part, dir_flags(), Mode::empty())?;
                }
                fd
            }
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        // Its own filesystem's kind: a node may be a mount of another kind than the root.
        let durability = Durability::of_fd(fd.as_fd())?;
        Ok(IdentityDir {
            dir: Dir(File::from(fd)),
            id: (st.st_dev, st.st_ino),
            path: self.path.join(rel),
            durability,
        })
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// One identity's directory, open. Its `path` is for messages and hooks only: nothing is ever
/// opened through it.
#[derive(Debug)]
pub(crate) struct IdentityDir {
    dir: Dir,
    id: FileId,
    path: PathBuf,
    /// How what is written here is made durable: where `syncfs` does not reach this
    /// directory's filesystem, each file is synced through the descriptor that wrote it.
    durability: Durability,
}

/// A file of an identity's mode and owner (of the entry itself: a link is never followed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Entry {
    /// Whether only root or the invoking user can change this file's bytes or give it another
    /// name: owned by one of them, writable by nobody else, and hard links to it restricted to
    /// its owner (`fs.protected_hardlinks`).
    fn only_rekey_can_change(&self) -> bool {
        static PROTECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let protected = *PROTECTED.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
                .is_ok_and(|v| v.trim() == "1")
        });
        let euid = rustix::process::geteuid().as_raw();
        protected && (self.uid == 0 || self.uid == euid) && self.mode & 0o022 == 0
    }
}

/// A file of an identity as [`IdentityDir::open_judged`] opened it: the bytes rekey judged, the
/// descriptor they were read from, and that file's mode and owner.
pub(crate) struct Judged {
    file: File,
    bytes: Zeroizing<Vec<u8>>,
    pub(crate) entry: Entry,
}

impl std::fmt::Debug for Judged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judged")
            .field("entry", &self.entry)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Why an identity's file could not be opened as it was judged.
#[derive(Debug)]
pub(crate) enum JudgedError {
    /// Something else is at its name now (what, in a fragment: "changed since it was read").
    Changed(&'static str),
    Io(io::Error),
}

impl IdentityDir {
    /// The directory's absolute path when it was opened (for messages and hooks).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's device and inode.
    pub(crate) fn file_id(&self) -> FileId {
        self.id
    }

    /// The directory as the readers read it (one generation at a time: `scan::read_in`).
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.0.as_fd()
    }

    /// The path of the entry `name`, for messages.
    pub(crate) fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads the entry `name` as [`super::read_credential`] reads a path.
    pub(crate) fn read(&self, name: &str) -> Slot {
        read_opened(|extra| {
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::CLOEXEC
                | OFlags::from_bits_retain(extra as _);
            rustix::fs::openat(self.fd(), name, flags, Mode::empty())
                .map(File::from)
                .map_err(io::Error::from)
        })
        .0
    }

    /// The entry `name` opened for reading when it is a regular file (never through a link,
    /// never waiting on a FIFO), numbered 10 or above; `None` when it is anything else or absent.
    pub(crate) fn open_regular(&self, name: &str) -> Option<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd(), name, flags, Mode::empty()).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        rustix::io::fcntl_dupfd_cloexec(&fd, 10).ok()
    }

    /// The entry `name` itself (a link is not followed); `None` when there is none.
    pub(crate) fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        match rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Entry {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the entry `name` exclusively (never through a link) with `mode`, writes `bytes`
    /// and gives it the owner and group `owner` when they differ from the creating user's.
    /// On failure, removes what it created. No sync: see [`super::sync_filesystem`].
    pub(crate) fn create_exclusive(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd(), name, flags, Mode::from_raw_mode(0o600))?;
        let mut file = File::from(fd);
        let result = (|| -> io::Result<()> {
            file.write_all(bytes)?;
            if let Some((uid, gid)) = owner {
                let st = rustix::fs::fstat(&file)?;
                if st.st_uid != uid || st.st_gid != gid {
                    rustix::fs::fchown(
                        &file,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                    )?;
                }
            }
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
            // Where a phase's one `syncfs` would not reach this file, it is made durable here,
            // through the descriptor that wrote it: reopened by name later, it could be another
            // file by then (the directory's owner can rename, remove or replace any entry).
            if self.durability == Durability::EachFile {
                file.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = self.remove(name);
        }
        result
    }

    /// The entry `name` opened once, to be replaced: a regular file (never through a link,
    /// never waiting on a FIFO) of at most 1 MiB whose bytes are those rekey judged (`judged`,
    /// their SHA-256), with its mode and owner from that same descriptor. Everything rekey then
    /// does with the old file (its backup, the new file's mode and owner) comes from this one
    /// opening: a name looked at again could be another file by then, since the directory's
    /// owner can rename, replace or grow any entry between two system calls. Its bytes are
    /// wiped when it is dropped (an old key is a secret).
    pub(crate) fn open_judged(&self, name: &str, judged: &Digest) -> Result<Judged, JudgedError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(self.fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => return Err(JudgedError::Changed("is a link now")),
            Err(rustix::io::Errno::NOENT) => return Err(JudgedError::Changed("is gone")),
            Err(rustix::io::Errno::NXIO) => {
                return Err(JudgedError::Changed("is not a regular file now"));
            }
            Err(e) => return Err(JudgedError::Io(e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| JudgedError::Io(e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(JudgedError::Changed("is not a regular file now"));
        }
        let mut file = File::from(fd);
        let mut bytes = Zeroizing::new(Vec::new());
        super::dir::read_known_size(&mut file, st.st_size as u64, &mut bytes)
            .map_err(JudgedError::Io)?;
        if Digest::of(&bytes) != *judged {
            return Err(JudgedError::Changed("changed since it was read"));
        }
        Ok(Judged {
            file,
            bytes,
            entry: Entry {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            },
        })
    }

    /// Makes `to` (a path in rekey's own state) the backup of `old`: a second name of that very
    /// file (a hard link, made from its descriptor) when nobody else could write it or link it
    /// elsewhere, or else (or where such a link cannot be made) a new file, mode 0600, holding
    /// the bytes that were judged. A link to a file its owner could still write through another
    /// name would let that owner change rekey's backup. Never overwrites: an existing `to` is
    /// an error and is left as it was.
    pub(crate) fn save_judged(&self, old: &Judged, to: &Path) -> io::Result<()> {
        if old.entry.only_rekey_can_change() {
            match rustix::fs::linkat(&old.file, "", rustix::fs::CWD, to, AtFlags::EMPTY_PATH) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::EXIST) => return Err(io::ErrorKind::AlreadyExists.into()),
                // Linking a descriptor needs CAP_DAC_READ_SEARCH: without it, a copy.
                Err(_) => {}
            }
        }
        write_exclusive(to, &old.bytes)
    }

    /// Makes the entry `name` a new name of the file at `from` (a path in rekey's own state),
    /// exclusively.
    pub(crate) fn link_from(&self, from: &Path, name: &str) -> io::Result<()> {
        rustix::fs::linkat(rustix::fs::CWD, from, self.fd(), name, AtFlags::empty())
            .map_err(io::Error::from)
    }

    /// Renames the entry `from` over the entry `to`, both in this directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(self.fd(), from, self.fd(), to).map_err(io::Error::from)
    }

    /// Removes the entry `name` (a file, never a directory).
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(self.fd(), name, AtFlags::empty()).map_err(io::Error::from)
    }

    /// `fsync` of the directory itself: its entries made durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(self.fd()).map_err(io::Error::from)
    }

    /// `syncfs` of the directory's filesystem, through its handle.
    fn sync_filesystem(&self) -> io::Result<()> {
        rustix::fs::syncfs(self.fd()).map_err(io::Error::from)
    }

    /// The directory's descriptor (a hook is started in it with `fchdir`).
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd()
    }
}

/// What one phase of a writing run changed, to be made durable together
/// ([`RootDir::make_durable`]): directories below `nodes/`, through their identity's handle
/// (a file written there was made durable as it was written, where its filesystem needs that:
/// [`IdentityDir::create_exclusive`]), and files and directories of rekey's own state, by path.
#[derive(Debug, Default)]
pub(crate) struct Changed<'a> {
    dirs: Vec<&'a IdentityDir>,
    own_files: Vec<std::path::PathBuf>,
    own_dirs: std::collections::BTreeSet<std::path::PathBuf>,
}

impl<'a> Changed<'a> {
    /// Entries of `dir` were created, renamed or removed.
    pub(crate) fn dir(&mut self, dir: &'a IdentityDir) {
        self.dirs.push(dir);
    }

    /// A file of rekey's own state was written.
    pub(crate) fn own_file(&mut self, path: std::path::PathBuf) {
        self.own_files.push(path);
    }

    /// Entries of a directory of rekey's own state were created or removed.
    pub(crate) fn own_dir(&mut self, path: std::path::PathBuf) {
        self.own_dirs.insert(path);
    }
}

impl RootDir {
    /// Makes what a phase changed durable, on every filesystem it touched: one `syncfs` of each
    /// (the root's first), or, on a filesystem `syncfs` does not reach, an `fsync` of every
    /// directory (and of each of rekey's own files) changed there. A node or `.rekey` mounted
    /// from another filesystem gets its own. A path of rekey's own state gone meanwhile has
    /// nothing left to keep. An identity's directory is synced through its handle, so whatever
    /// its owner does to its entries meanwhile fails no other identity and makes rekey open
    /// nothing of theirs.
    pub(crate) fn make_durable(&self, changed: &Changed<'_>) -> Result<()> {
        use rayon::prelude::*;
        use std::collections::{BTreeMap, BTreeSet};
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        // Filesystems synced whole, by device.
        let mut whole = BTreeSet::new();
        if self.durability == Durability::Syncfs {
            sync_filesystem(self.path())?;
            whole.insert(self.dev);
        }
        let mut each = Vec::new();
        for dir in &changed.dirs {
            match dir.durability {
                Durability::EachFile => each.push(*dir),
                Durability::Syncfs if whole.insert(dir.id.0) => dir
                    .sync_filesystem()
                    .with_context(|| format!("failed to sync the filesystem of {}", dir.path().display()))?,
                Durability::Syncfs => {}
            }
        }
        each.par_iter().try_for_each(|dir| {
            dir.sync()
                .with_context(|| format!("failed to sync directory {}", dir.path().display()))
        })?;
        // rekey's own state, by path (only root can change it): each directory's filesystem,
        // known once per device.
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        let mut kinds: BTreeMap<u64, Durability> = BTreeMap::new();
        let mut own_each: BTreeSet<&Path> = BTreeSet::new();
        let dirs_of_files = changed.own_files.iter().filter_map(|f| f.parent());
        let own_dirs: BTreeSet<&Path> = changed
            .own_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(dirs_of_files)
            .collect();
        for dir in &own_dirs {
            let dev = match std::fs::metadata(dir) {
                Ok(m) => m.dev(),
                Err(e) if gone(&e) => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to read {}", dir.display()));
                }
            };
            let kind = match kinds.get(&dev) {
                Some(kind) => *kind,
                None => {
                    let kind = Durability::of(dir)
                        .with_context(|| format!("failed to read {}", dir.display()))?;
                    kinds.insert(dev, kind);
                    kind
                }
            };
            match kind {
                Durability::EachFile => {
                    own_each.insert(dir);
                }
                Durability::Syncfs if whole.insert(dev) => sync_filesystem(dir)?,
                Durability::Syncfs => {}
            }
        }
        // Never through a link, never waiting on a FIFO: only root can change these paths, and
        // even so a sync opens nothing it did not write.
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
        };
        let sync_own = |path: &Path, what: &str| match open(path).and_then(|f| f.sync_all()) {
            Err(e) if !gone(&e) => {
                Err(e).with_context(|| format!("failed to sync {what}{}", path.display()))
            }
            _ => Ok(()),
        };
        changed
            .own_files
            .par_iter()
            .filter(|f| f.parent().is_some_and(|d| own_each.contains(d)))
            .try_for_each(|path| sync_own(path, ""))?;
        changed
            .own_dirs
            .par_iter()
            .filter(|d| own_each.contains(d.as_path()))
            .try_for_each(|path| sync_own(path, "directory "))
    }
}

#[cfg(test)]
mod tests;
