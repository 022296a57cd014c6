//! The filesystem as rekey sees it, and as a power cut would leave it.
//!
//! Every inode keeps its current state and its durable state: a file the bytes and attributes
//! of its last `fsync`/`fdatasync` and the writes since then; a directory its entries at its
//! last `fsync` and the creates, renames, links and unlinks since then. A cut builds the tree
//! a disk would hold after losing power: from the root, each directory's durable entries and
//! each file's durable bytes, plus (the reordering cut) a seeded random subset of what was not
//! synced yet, each directory's and file's operations applied in their order, any of them left
//! out (Pebble's crash clone of its in-memory filesystem does the same). This module is pure:
//! no FUSE, no disk.

use std::collections::{BTreeMap, HashMap, HashSet};
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

    /// Everything durable (what a `syncfs` that reached the filesystem would do).
    pub fn sync_all(&mut self) {
        let inos: Vec<u64> = self.nodes.keys().copied().collect();
        for ino in inos {
            let _ = self.sync(ino);
        }
    }

    /// The tree a disk would hold: see the module's comment. `skip` is left out (the control
    /// file).
    pub fn image(&self, survives: Survives, skip: u64) -> Image {
        let mut rng = Rng(match survives {
            Survives::Some(seed) => seed | 1,
            _ => 1,
        });
        let mut seen = HashSet::new();
        self.image_of(ROOT, survives, &mut rng, &mut seen, skip)
            .unwrap_or_else(|| Image::Dir(BTreeMap::new(), self.nodes[&ROOT].meta))
    }

    fn image_of(
        &self,
        ino: u64,
        survives: Survives,
        rng: &mut Rng,
        seen: &mut HashSet<u64>,
        skip: u64,
    ) -> Option<Image> {
        let node = self.nodes.get(&ino)?;
        let meta = match survives {
            Survives::Everything => node.meta,
            Survives::Synced => node.synced_meta,
            Survives::Some(_) if rng.coin() => node.meta,
            Survives::Some(_) => node.synced_meta,
        };
        Some(match &node.kind {
            Kind::Link(target) => Image::Link(target.clone()),
            Kind::File { data, synced, log } => {
                let (bytes, meta) = match survives {
                    Survives::Everything => (data.clone(), node.meta),
                    Survives::Synced => (synced.clone(), node.synced_meta),
                    Survives::Some(_) => {
                        let (mut bytes, mut meta) = (synced.clone(), node.synced_meta);
                        for op in log.iter().filter(|_| rng.coin()) {
                            match op {
                                FileOp::Write { offset, bytes: b } => {
                                    write_at(&mut bytes, *offset, b)
                                }
                                FileOp::Truncate(size) => bytes.resize(*size as usize, 0),
                                FileOp::Meta(m) => meta = *m,
                            }
                        }
                        (bytes, meta)
                    }
                };
                Image::File(ino, bytes, meta)
            }
            Kind::Dir {
                entries,
                synced,
                log,
            } => {
                if !seen.insert(ino) {
                    return None; // a loop a reordering made: the directory is already placed
                }
                let names = match survives {
                    Survives::Everything => entries.clone(),
                    Survives::Synced => synced.clone(),
                    Survives::Some(_) => {
                        let mut names = synced.clone();
                        for op in log.iter().filter(|_| rng.coin()) {
                            match op {
                                DirOp::Insert(name, ino) => {
                                    names.insert(name.clone(), *ino);
                                }
                                DirOp::Remove(name) => {
                                    names.remove(name);
                                }
                                DirOp::Move { from, to } => {
                                    if let Some(ino) = names.remove(from) {
                                        names.insert(to.clone(), ino);
                                    }
                                }
                            }
                        }
                        names
                    }
                };
                let mut children = BTreeMap::new();
                for (name, child) in names {
                    if child == skip {
                        continue;
                    }
                    if let Some(image) = self.image_of(child, survives, rng, seen, skip) {
                        children.insert(name, image);
                    }
                }
                Image::Dir(children, meta)
            }
        })
    }
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    if data.len() < start + bytes.len() {
        data.resize(start + bytes.len(), 0);
    }
    data[start..start + bytes.len()].copy_from_slice(bytes);
}

/// xorshift64: a cut's choices follow from its seed alone.
struct Rng(u64);

impl Rng {
    fn coin(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };

    fn file<'a>(image: &'a Image, name: &str) -> Option<&'a Vec<u8>> {
        match image {
            Image::Dir(children, _) => match children.get(OsStr::new(name)) {
                Some(Image::File(_, bytes, _)) => Some(bytes),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn a_strict_cut_keeps_only_what_was_synced() {
        let mut fs = Model::new(M);
        let old = fs
            .create(ROOT, OsStr::new("a"), New::File, M, true)
            .unwrap();
        fs.write(old, 0, b"old").unwrap();
        fs.sync(old).unwrap();
        // Written and renamed over, the file synced but not the directory: the old name wins.
        let new = fs
            .create(ROOT, OsStr::new("a.tmp"), New::File, M, false)
            .unwrap();
        fs.write(new, 0, b"new").unwrap();
        fs.sync(new).unwrap();
        fs.rename(ROOT, OsStr::new("a.tmp"), ROOT, OsStr::new("a"), false)
            .unwrap();
        let cut = fs.image(Survives::Synced, 0);
        assert_eq!(file(&cut, "a").unwrap(), b"old");
        assert!(file(&cut, "a.tmp").is_none());
        assert_eq!(
            file(&fs.image(Survives::Everything, 0), "a").unwrap(),
            b"new"
        );
        fs.sync(ROOT).unwrap();
        assert_eq!(file(&fs.image(Survives::Synced, 0), "a").unwrap(), b"new");
        // Renamed without the file synced: the name survives, the bytes do not.
        let empty = fs
            .create(ROOT, OsStr::new("b"), New::File, M, false)
            .unwrap();
        fs.write(empty, 0, b"unsynced").unwrap();
        fs.sync(ROOT).unwrap();
        assert_eq!(file(&fs.image(Survives::Synced, 0), "b").unwrap(), b"");
    }

    #[test]
    fn a_reordering_cut_keeps_some_unsynced_steps_and_follows_its_seed() {
        let mut fs = Model::new(M);
        for i in 0..32 {
            let ino = fs
                .create(ROOT, OsStr::new(&format!("f{i}")), New::File, M, false)
                .unwrap();
            fs.write(ino, 0, b"x").unwrap();
        }
        let count = |image: &Image| match image {
            Image::Dir(children, _) => children.len(),
            _ => 0,
        };
        let some = fs.image(Survives::Some(7), 0);
        assert!((1..32).contains(&count(&some)), "{}", count(&some));
        assert_eq!(some, fs.image(Survives::Some(7), 0));
        assert_ne!(some, fs.image(Survives::Some(8), 0));
        assert_eq!(count(&fs.image(Survives::Synced, 0)), 0);
    }
}
