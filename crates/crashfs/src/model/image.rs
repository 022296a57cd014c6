//! The tree a disk would hold after a cut: from the root, each directory's durable entries and
//! each file's durable bytes, plus (the reordering cut) a seeded random subset of what was not
//! synced yet, each directory's and file's operations applied in their order, any of them left
//! out.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::ffi::OsString;

use super::{DirOp, FileOp, Image, Kind, Model, ROOT, Survives, write_at};

/// One cut being built: what survives, its random choices, the directories placed, and each
/// exchange's choice (both halves alike).
struct Cut {
    survives: Survives,
    rng: Rng,
    seen: HashSet<u64>,
    pairs: HashMap<u64, bool>,
    /// Left out (the control file).
    skip: u64,
}

impl Cut {
    /// Whether an unsynced operation survives a reordering cut; an exchange's halves alike.
    fn keeps(&mut self, op: &DirOp) -> bool {
        match op {
            DirOp::Exchange { pair, .. } => {
                let coin = self.rng.coin();
                *self.pairs.entry(*pair).or_insert(coin)
            }
            _ => self.rng.coin(),
        }
    }
}

impl Model {
    /// The tree a disk would hold: see the module's comment. `skip` is left out (the control
    /// file).
    pub fn image(&self, survives: Survives, skip: u64) -> Image {
        let mut cut = Cut {
            survives,
            rng: Rng(match survives {
                Survives::Some(seed) => seed | 1,
                _ => 1,
            }),
            seen: HashSet::new(),
            pairs: HashMap::new(),
            skip,
        };
        self.image_of(ROOT, &mut cut)
            .unwrap_or_else(|| Image::Dir(BTreeMap::new(), self.nodes[&ROOT].meta))
    }

    fn image_of(&self, ino: u64, cut: &mut Cut) -> Option<Image> {
        let node = self.nodes.get(&ino)?;
        let meta = match cut.survives {
            Survives::Everything => node.meta,
            Survives::Synced => node.synced_meta,
            Survives::Some(_) if cut.rng.coin() => node.meta,
            Survives::Some(_) => node.synced_meta,
        };
        Some(match &node.kind {
            Kind::Link(target) => Image::Link(target.clone()),
            Kind::File { data, synced, log } => {
                let (bytes, meta) = match cut.survives {
                    Survives::Everything => (data.clone(), node.meta),
                    Survives::Synced => (synced.clone(), node.synced_meta),
                    Survives::Some(_) => {
                        let (mut bytes, mut meta) = (synced.clone(), node.synced_meta);
                        for op in log.iter().filter(|_| cut.rng.coin()) {
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
                if !cut.seen.insert(ino) {
                    return None; // a loop a reordering made: the directory is already placed
                }
                let names = match cut.survives {
                    Survives::Everything => entries.clone(),
                    Survives::Synced => synced.clone(),
                    Survives::Some(_) => {
                        let mut names = synced.clone();
                        for op in log {
                            if cut.keeps(op) {
                                apply(&mut names, op);
                            }
                        }
                        names
                    }
                };
                let mut children = BTreeMap::new();
                for (name, child) in names {
                    if child == cut.skip {
                        continue;
                    }
                    if let Some(image) = self.image_of(child, cut) {
                        children.insert(name, image);
                    }
                }
                Image::Dir(children, meta)
            }
        })
    }
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

/// A directory operation applied to a directory's entries.
pub(super) fn apply(names: &mut BTreeMap<OsString, u64>, op: &DirOp) {
    match op {
        DirOp::Insert(name, ino) | DirOp::Exchange { name, ino, .. } => {
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
        DirOp::Swap(a, b) => {
            let (x, y) = (names.remove(a), names.remove(b));
            if let Some(y) = y {
                names.insert(a.clone(), y);
            }
            if let Some(x) = x {
                names.insert(b.clone(), x);
            }
        }
    }
}
