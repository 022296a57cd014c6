//! The filesystem as rekey sees it, and as a power cut would leave it.
//!
//! Every inode keeps its current state and its durable state: a file the bytes and attributes
//! of its last `fsync`/`fdatasync` and the writes since then; a directory its entries at its
//! last `fsync` and the creates, renames, exchanges, links and unlinks since then. A cut builds
//! the tree a disk would hold after losing power (`image`): from the root, each directory's
//! durable entries and each file's durable bytes, plus (the reordering cut) a seeded random
//! subset of what was not synced yet, each directory's and file's operations applied in their
//! order, any of them left out (Pebble's crash clone of its in-memory filesystem does the same).
//!
//! An exchange of two directories' entries (`renameat2(RENAME_EXCHANGE)`) is one operation of
//! both: the sync of either makes it durable in both, and a reordering cut keeps both halves or
//! neither. A directory never has two names, and a journaling filesystem commits both
//! directories of a rename in one transaction; kept apart, a cut between the two directories'
//! syncs would leave one tree under both names and the other nowhere, which no disk holds.
//!
//! This module is pure: no FUSE, no disk.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};

/// The inode of the root directory (FUSE's root id).
pub const ROOT: u64 = 1;

/// An errno.
pub type Errno = i32;

/// Owner, group and permission bits of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    Truncate(u64),
    Meta(Meta),
}

#[derive(Debug, Clone)]
pub(crate) enum DirOp {
    Insert(OsString, u64),
    Remove(OsString),
    /// A rename inside this directory: one step, whichever way a cut falls.
    Move {
        from: OsString,
        to: OsString,
    },
    /// An exchange inside this directory (`RENAME_EXCHANGE`): one step.
    Swap(OsString, OsString),
    /// This directory's half of an exchange with another directory's entry: `name` now names
    /// `ino`. Both halves are one operation (`pair`): durable in both directories once either
    /// is synced, and a reordering cut keeps both or neither (see [`Model::exchange`]).
    Exchange {
        name: OsString,
        ino: u64,
        pair: u64,
        other: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        log: Vec<FileOp>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
        log: Vec<DirOp>,
    },
    Link(OsString),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) meta: Meta,
    synced_meta: Meta,
    pub(crate) nlink: u32,
}

/// The kind of a new inode.
#[derive(Debug, Clone)]
pub enum New {
    File,
    Dir,
    Link(OsString),
}

/// What survives a cut.
#[derive(Debug, Clone, Copy)]
pub enum Survives {
    /// Everything (a clean unmount).
    Everything,
    /// Only what was synced (the strict cut).
    Synced,
    /// What was synced and a random subset of the rest, drawn from this seed.
    Some(u64),
}

/// One node of the tree a cut leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// A file: its inode (for hard links), bytes and attributes.
    File(u64, Vec<u8>, Meta),
    Dir(BTreeMap<OsString, Image>, Meta),
    Link(OsString),
}

/// The whole filesystem.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) nodes: HashMap<u64, Node>,
    next: u64,
    /// The next exchange's pair number.
    pairs: u64,
}

impl Model {
    /// An empty filesystem whose root has `meta`.
    pub fn new(meta: Meta) -> Model {
        let root = Node {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
                log: Vec::new(),
            },
            meta,
            synced_meta: meta,
            nlink: 2,
        };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next: ROOT + 1,
            pairs: 0,
        }
    }

    pub(crate) fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir_mut(
        &mut self,
        ino: u64,
    ) -> Result<(&mut BTreeMap<OsString, u64>, &mut Vec<DirOp>), Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir { entries, log, .. } => Ok((entries, log)),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        match &self.node(parent)?.kind {
            Kind::Dir { entries, .. } => entries.get(name).copied().ok_or(libc::ENOENT),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The entries of directory `ino`, in name order.
    pub fn entries(&self, ino: u64) -> Result<Vec<(OsString, u64)>, Errno> {
        match &self.node(ino)?.kind {
            Kind::Dir { entries, .. } => Ok(entries.iter().map(|(n, i)| (n.clone(), *i)).collect()),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// Makes a new inode named `name` in `parent`, durable already (as a file found on disk
    /// when the filesystem is loaded) when `durable`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        new: New,
        meta: Meta,
        durable: bool,
    ) -> Result<u64, Errno> {
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        let kind = match new {
            New::File => Kind::File {
                data: Vec::new(),
                synced: Vec::new(),
                log: Vec::new(),
            },
            New::Dir => Kind::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
                log: Vec::new(),
            },
            New::Link(target) => Kind::Link(target),
        };
        let nlink = if matches!(kind, Kind::Dir { .. }) {
            2
        } else {
            1
        };
        self.nodes.insert(
            ino,
            Node {
                kind,
                meta,
                synced_meta: meta,
                nlink,
            },
        );
        self.insert(parent, name, ino, durable)?;
        Ok(ino)
    }

    fn insert(&mut self, parent: u64, name: &OsStr, ino: u64, durable: bool) -> Result<(), Errno> {
        let (entries, log) = self.dir_mut(parent)?;
        entries.insert(name.to_owned(), ino);
        log.push(DirOp::Insert(name.to_owned(), ino));
        if durable {
            self.sync(parent)?;
        }
        Ok(())
    }

    /// Another name for `ino`.
    pub fn link(
        &mut self,
        ino: u64,
        parent: u64,
        name: &OsStr,
        durable: bool,
    ) -> Result<(), Errno> {
        if matches!(self.node(ino)?.kind, Kind::Dir { .. }) {
            return Err(libc::EPERM);
        }
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        self.node_mut(ino)?.nlink += 1;
        self.insert(parent, name, ino, durable)
    }

    /// Removes the entry `name` of `parent` (a file, or an empty directory when `dir`).
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.kind, dir) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(libc::ENOTEMPTY);
            }
            (Kind::Dir { .. }, true) => {}
            (Kind::Dir { .. }, false) => return Err(libc::EISDIR),
            (_, true) => return Err(libc::ENOTDIR),
            (_, false) => {}
        }
        let node = self.node_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        let (entries, log) = self.dir_mut(parent)?;
        entries.remove(name);
        log.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    /// Renames `parent/name` to `to_parent/to_name`, replacing what is there (unless
    /// `no_replace`).
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        to_parent: u64,
        to_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if parent == to_parent && name == to_name {
            return Ok(());
        }
        let is_dir = matches!(self.node(ino)?.kind, Kind::Dir { .. });
        if let Ok(old) = self.lookup(to_parent, to_name) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.node(old)?.kind, is_dir) {
                (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY);
                }
                (Kind::Dir { .. }, false) => return Err(libc::EISDIR),
                (Kind::Dir { .. }, true) => {}
                (_, true) => return Err(libc::ENOTDIR),
                (_, false) => {}
            }
            let node = self.node_mut(old)?;
            node.nlink = node.nlink.saturating_sub(1);
        }
        if parent == to_parent {
            let (entries, log) = self.dir_mut(parent)?;
            entries.remove(name);
            entries.insert(to_name.to_owned(), ino);
            log.push(DirOp::Move {
                from: name.to_owned(),
                to: to_name.to_owned(),
            });
        } else {
            let (entries, log) = self.dir_mut(parent)?;
            entries.remove(name);
            log.push(DirOp::Remove(name.to_owned()));
            let (entries, log) = self.dir_mut(to_parent)?;
            entries.insert(to_name.to_owned(), ino);
            log.push(DirOp::Insert(to_name.to_owned(), ino));
        }
        Ok(())
    }

    /// Exchanges `parent/name` and `to_parent/to_name` (`renameat2(RENAME_EXCHANGE)`): both
    /// names stay, each now naming the other's inode. Between two directories it is one
    /// operation recorded in each: a directory cannot have two names, and a journaling
    /// filesystem commits a rename's two directories in one transaction, so the sync of either
    /// makes it durable in both.
    pub fn exchange(
        &mut self,
        parent: u64,
        name: &OsStr,
        to_parent: u64,
        to_name: &OsStr,
    ) -> Result<(), Errno> {
        let (a, b) = (self.lookup(parent, name)?, self.lookup(to_parent, to_name)?);
        if parent == to_parent {
            if name != to_name {
                let (entries, log) = self.dir_mut(parent)?;
                entries.insert(name.to_owned(), b);
                entries.insert(to_name.to_owned(), a);
                log.push(DirOp::Swap(name.to_owned(), to_name.to_owned()));
            }
            return Ok(());
        }
        let pair = self.pairs;
        self.pairs += 1;
        for (dir, entry, ino, other) in [
            (parent, name, b, to_parent),
            (to_parent, to_name, a, parent),
        ] {
            let (entries, log) = self.dir_mut(dir)?;
            entries.insert(entry.to_owned(), ino);
            log.push(DirOp::Exchange {
                name: entry.to_owned(),
                ino,
                pair,
                other,
            });
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` of file `ino`.
    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File { data, log, .. } => {
                write_at(data, offset, bytes);
                log.push(FileOp::Write {
                    offset,
                    bytes: bytes.to_vec(),
                });
                Ok(())
            }
            Kind::Dir { .. } => Err(libc::EISDIR),
            Kind::Link(_) => Err(libc::EINVAL),
        }
    }

    /// Cuts or extends file `ino` to `size`.
    pub fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File { data, log, .. } => {
                data.resize(usize::try_from(size).map_err(|_| libc::EFBIG)?, 0);
                log.push(FileOp::Truncate(size));
                Ok(())
            }
            Kind::Dir { .. } => Err(libc::EISDIR),
            Kind::Link(_) => Err(libc::EINVAL),
        }
    }

    /// Gives `ino` new attributes.
    pub fn set_meta(&mut self, ino: u64, meta: Meta) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        node.meta = meta;
        if let Kind::File { log, .. } = &mut node.kind {
            log.push(FileOp::Meta(meta));
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` of file `ino`.
    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<&[u8], Errno> {
        match &self.node(ino)?.kind {
            Kind::File { data, .. } => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                Ok(&data[start..(start.saturating_add(size)).min(data.len())])
            }
            Kind::Dir { .. } => Err(libc::EISDIR),
            Kind::Link(_) => Err(libc::EINVAL),
        }
    }

    /// `fsync` of `ino`: a file's bytes and attributes, a directory's entries and attributes
    /// become durable.
    pub fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let halves: Vec<(u64, u64)> = match &self.node(ino)?.kind {
            Kind::Dir { log, .. } => log
                .iter()
                .filter_map(|op| match op {
                    DirOp::Exchange { pair, other, .. } => Some((*pair, *other)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for (pair, other) in halves {
            self.settle_half(other, pair);
        }
        let node = self.node_mut(ino)?;
        node.synced_meta = node.meta;
        match &mut node.kind {
            Kind::File { data, synced, log } => {
                synced.clone_from(data);
                log.clear();
            }
            Kind::Dir {
                entries,
                synced,
                log,
            } => {
                synced.clone_from(entries);
                log.clear();
            }
            Kind::Link(_) => {}
        }
        Ok(())
    }

    /// The other half of exchange `pair` in directory `dir` made durable with what came before
    /// it in that directory (the transaction that commits it commits those too).
    fn settle_half(&mut self, dir: u64, pair: u64) {
        let Some(Node {
            kind: Kind::Dir { synced, log, .. },
            ..
        }) = self.nodes.get_mut(&dir)
        else {
            return;
        };
        let Some(at) = log
            .iter()
            .position(|op| matches!(op, DirOp::Exchange { pair: p, .. } if *p == pair))
        else {
            return;
        };
        for op in log.drain(..=at) {
            apply(synced, &op);
        }
    }

    /// Everything durable (what a `syncfs` that reached the filesystem would do).
    pub fn sync_all(&mut self) {
        let inos: Vec<u64> = self.nodes.keys().copied().collect();
        for ino in inos {
            let _ = self.sync(ino);
        }
    }
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    if data.len() < start + bytes.len() {
        data.resize(start + bytes.len(), 0);
    }
    data[start..start + bytes.len()].copy_from_slice(bytes);
}

mod image;
#[cfg(test)]
mod tests;

use image::apply;
