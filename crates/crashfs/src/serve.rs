//! The model served over FUSE: each request is one step of [`Model`], counted when it changes
//! anything (a sync included), so that "cut at the Nth mutating operation" names one instant of
//! a run. From the cut on, every request fails with `EIO`: the disk is gone.

use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Kind, Meta, Model, New};

/// How long the kernel may keep a name or attributes: every change goes through it, so what it
/// keeps stays true; after a cut, whatever it kept still cannot change anything.
const TTL: Duration = Duration::from_secs(1);

/// The model, the count of mutating operations, and the cut.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) model: Model,
    pub(crate) ops: u64,
    pub(crate) cut_at: Option<u64>,
    pub(crate) cut: bool,
    /// The control file whose `fsync` stands for a `syncfs` (see the crate's comment).
    pub(crate) control: u64,
    pub(crate) syncfs: u64,
    /// Each mutating request, in order: what it was and the name it concerned.
    pub(crate) trace: Vec<String>,
    /// The last name each inode was given (for the trace).
    pub(crate) names: std::collections::HashMap<u64, std::ffi::OsString>,
}

impl State {
    fn name_of(&self, ino: u64) -> String {
        self.names
            .get(&ino)
            .map_or_else(|| format!("#{ino}"), |n| n.to_string_lossy().into_owned())
    }
}

pub(crate) type Shared = Arc<(Mutex<State>, Condvar)>;

pub(crate) struct CrashFs(pub(crate) Shared);

impl CrashFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, for a request that reads: refused once the power is cut.
    fn read(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.state();
        if state.cut {
            return Err(Errno::EIO);
        }
        Ok(state)
    }

    /// The state, for a request that changes something: counted, and the cut when it is the
    /// Nth (the request does not happen).
    fn mutate(
        &self,
        op: &str,
        ino: u64,
        name: Option<&OsStr>,
    ) -> Result<MutexGuard<'_, State>, Errno> {
        let mut state = self.read()?;
        state.ops += 1;
        let name = name.map_or_else(|| state.name_of(ino), |n| n.to_string_lossy().into_owned());
        state.trace.push(format!("{op} {name}"));
        if state.cut_at == Some(state.ops) {
            state.cut = true;
            self.0.1.notify_all();
            return Err(Errno::EIO);
        }
        Ok(state)
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn attr(model: &Model, ino: u64) -> Result<FileAttr, Errno> {
    let node = model.node(ino).map_err(errno)?;
    let (kind, size) = match &node.kind {
        Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64),
        Kind::Dir { entries, .. } => (FileType::Directory, entries.len() as u64),
        Kind::Link(target) => (FileType::Symlink, target.len() as u64),
    };
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: (node.meta.mode & 0o7777) as u16,
        nlink: node.nlink,
        uid: node.meta.uid,
        gid: node.meta.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    })
}

impl CrashFs {
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new: New,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.mutate("create", 0, Some(name))?;
        let meta = Meta {
            mode: mode & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
        };
        let ino = state
            .model
            .create(parent.0, name, new, meta, false)
            .map_err(errno)?;
        state.names.insert(ino, name.to_owned());
        attr(&state.model, ino)
    }
}

impl Filesystem for CrashFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.read().and_then(|s| {
            let ino = s.model.lookup(parent.0, name).map_err(errno)?;
            attr(&s.model, ino)
        });
        match found {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.read().and_then(|s| attr(&s.model, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let done = (|| {
            if mode.is_none() && uid.is_none() && gid.is_none() && size.is_none() {
                let s = self.read()?;
                return attr(&s.model, ino.0); // times only: not kept
            }
            let mut s = self.mutate("setattr", ino.0, None)?;
            if let Some(size) = size {
                s.model.truncate(ino.0, size).map_err(errno)?;
            }
            if mode.is_some() || uid.is_some() || gid.is_some() {
                let old = s.model.node(ino.0).map_err(errno)?.meta;
                let meta = Meta {
                    mode: mode.map_or(old.mode, |m| m & 0o7777),
                    uid: uid.unwrap_or(old.uid),
                    gid: gid.unwrap_or(old.gid),
                };
                s.model.set_meta(ino.0, meta).map_err(errno)?;
            }
            attr(&s.model, ino.0)
        })();
        match done {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = self
            .read()
            .and_then(|s| match &s.model.node(ino.0).map_err(errno)?.kind {
                Kind::Link(t) => Ok(t.clone()),
                _ => Err(Errno::EINVAL),
            });
        match target {
            Ok(t) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.make(req, parent, name, New::Dir, mode & !umask) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM); // only regular files, directories and links
        }
        match self.make(req, parent, name, New::File, mode & !umask) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        match self.make(
            req,
            parent,
            name,
            New::Link(target.as_os_str().to_owned()),
            0o777,
        ) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.make(req, parent, name, New::File, mode & !umask) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .mutate("unlink", 0, Some(name))
            .and_then(|mut s| s.model.remove(parent.0, name, false).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .mutate("rmdir", 0, Some(name))
            .and_then(|mut s| s.model.remove(parent.0, name, true).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return match self.mutate("exchange", 0, Some(newname)).and_then(|mut s| {
                let a = s.model.lookup(parent.0, name).map_err(errno)?;
                let b = s.model.lookup(newparent.0, newname).map_err(errno)?;
                s.model
                    .exchange(parent.0, name, newparent.0, newname)
                    .map_err(errno)?;
                s.names.insert(a, newname.to_owned());
                s.names.insert(b, name.to_owned());
                Ok(())
            }) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            };
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.mutate("rename", 0, Some(newname)).and_then(|mut s| {
            let ino = s.model.lookup(parent.0, name).map_err(errno)?;
            s.model
                .rename(parent.0, name, newparent.0, newname, no_replace)
                .map_err(errno)?;
            s.names.insert(ino, newname.to_owned());
            Ok(())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.mutate("link", 0, Some(newname)).and_then(|mut s| {
            s.model
                .link(ino.0, newparent.0, newname, false)
                .map_err(errno)?;
            attr(&s.model, ino.0)
        }) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.read().and_then(|s| attr(&s.model, ino.0)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read() {
            Ok(s) => match s.model.read(ino.0, offset, size as usize) {
                Ok(bytes) => reply.data(bytes),
                Err(e) => reply.error(errno(e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.mutate("write", ino.0, None).and_then(|mut s| {
            let at = if flags.0 & libc::O_APPEND != 0 {
                s.model.read(ino.0, 0, usize::MAX).map_err(errno)?.len() as u64
            } else {
                offset
            };
            s.model.write(ino.0, at, data).map_err(errno)
        }) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.read() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.mutate("fsync", ino.0, None).and_then(|mut s| {
            if ino.0 == s.control {
                s.syncfs += 1;
                s.model.sync_all();
                Ok(())
            } else {
                s.model.sync(ino.0).map_err(errno)
            }
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self
            .read()
            .and_then(|s| s.model.entries(ino.0).map_err(errno))
        {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.read().and_then(|s| {
            let mut all = vec![
                (".".into(), ino.0, FileType::Directory),
                ("..".into(), ino.0, FileType::Directory),
            ];
            for (name, child) in s.model.entries(ino.0).map_err(errno)? {
                let kind = attr(&s.model, child)?.kind;
                all.push((name, child, kind));
            }
            Ok(all)
        });
        match listed {
            Ok(all) => {
                for (i, (name, child, kind)) in all.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self
            .mutate("fsyncdir", ino.0, None)
            .and_then(|mut s| s.model.sync(ino.0).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.read() {
            Ok(_) => reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.read() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
