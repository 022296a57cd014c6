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

use super::dir::{Dir, FileId, Slot, copy_exclusive, read_opened};
use super::durability::{Durability, sync_filesystem};
use crate::names::IdentityId;

/// The fleet root, opened once per writing run: identities are opened beneath it.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
    durability: Durability,
}

impl RootDir {
    /// Opens the fleet root `path` (canonical, and checked as trusted by the caller).
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())?;
        let durability = Durability::of_fd(fd.as_fd())?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
            durability,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How a phase of a run on this fleet is made durable: known from the filesystem's type
    /// when the root is opened.
    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    /// A second handle on the same directory.
    pub(crate) fn try_clone(&self) -> io::Result<RootDir> {
        Ok(RootDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
            durability: self.durability,
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
        Ok(IdentityDir {
            dir: Dir(File::from(fd)),
            id: (st.st_dev, st.st_ino),
            path: self.path.join(rel),
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
}

/// What a file of an identity is: its type, mode and owner (the link itself, never followed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) is_file: bool,
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
                is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
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
            Ok(())
        })();
        if result.is_err() {
            let _ = self.remove(name);
        }
        result
    }

    /// Makes `to` (a path in rekey's own state) a second name of the entry `name` (a hard link)
    /// when `entry` says nobody else could write that file or link it elsewhere, or else (or
    /// where a link cannot be made: another filesystem) a new file with a copy of its bytes,
    /// mode 0600. A link to a file its owner could still write through another name would let
    /// that owner change rekey's backup. Never overwrites: an existing `to` is an error and is
    /// left as it was.
    pub(crate) fn save_to(&self, name: &str, entry: &Entry, to: &Path) -> io::Result<()> {
        let linked = if entry.only_rekey_can_change() {
            rustix::fs::linkat(self.fd(), name, rustix::fs::CWD, to, AtFlags::empty())
        } else {
            Err(rustix::io::Errno::PERM)
        };
        match linked {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
            Err(_) => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let mut source = File::from(rustix::fs::openat(self.fd(), name, flags, Mode::empty())?);
                copy_exclusive(&mut source, to)
            }
        }
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

    /// `fsync` of the entry `name` (never through a link).
    pub(crate) fn sync_entry(&self, name: &str) -> io::Result<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd(), name, flags, Mode::empty())?;
        rustix::fs::fsync(&fd).map_err(io::Error::from)
    }

    /// `fsync` of the directory itself: its entries made durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(self.fd()).map_err(io::Error::from)
    }

    /// The directory's descriptor (a hook is started in it with `fchdir`).
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd()
    }
}

/// What one phase of a writing run changed, to be made durable together
/// ([`RootDir::make_durable`]): files and directories below `nodes/`, through their identity's
/// handle, and files and directories of rekey's own state, by path.
#[derive(Debug, Default)]
pub(crate) struct Changed<'a> {
    files: Vec<(&'a IdentityDir, String)>,
    dirs: Vec<&'a IdentityDir>,
    own_files: Vec<std::path::PathBuf>,
    own_dirs: std::collections::BTreeSet<std::path::PathBuf>,
}

impl<'a> Changed<'a> {
    /// The file `name` of `dir` was written.
    pub(crate) fn file_in(&mut self, dir: &'a IdentityDir, name: String) {
        self.files.push((dir, name));
    }

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
    /// Makes what a phase changed durable: one `syncfs`, or where that does not reach the
    /// filesystem, an `fsync` of every file and then of every directory (a directory gone
    /// meanwhile has nothing left to keep).
    pub(crate) fn make_durable(&self, changed: &Changed<'_>) -> Result<()> {
        use rayon::prelude::*;
        if self.durability() == Durability::Syncfs {
            return sync_filesystem(self.path());
        }
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        changed.files.par_iter().try_for_each(|(dir, name)| {
            dir.sync_entry(name)
                .with_context(|| format!("failed to sync {}", dir.shown(name).display()))
        })?;
        changed.own_files.par_iter().try_for_each(|path| {
            match File::open(path).and_then(|f| f.sync_all()) {
                Err(e) if !gone(&e) => {
                    Err(e).with_context(|| format!("failed to sync {}", path.display()))
                }
                _ => Ok(()),
            }
        })?;
        changed.dirs.par_iter().try_for_each(|dir| {
            dir.sync()
                .with_context(|| format!("failed to sync directory {}", dir.path().display()))
        })?;
        changed.own_dirs.par_iter().try_for_each(|path| {
            match File::open(path).and_then(|f| f.sync_all()) {
                Err(e) if !gone(&e) => {
                    Err(e).with_context(|| format!("failed to sync directory {}", path.display()))
                }
                _ => Ok(()),
            }
        })
    }
}
