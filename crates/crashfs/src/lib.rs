//! A filesystem for rekey's power-loss tests that forgets what was not made durable.
//!
//! [`mount`] loads a backing directory into memory and serves it over FUSE. It keeps, per file,
//! what was written since its last `fsync`/`fdatasync`, and per directory the creates, renames,
//! exchanges, links and unlinks since its last `fsync` ([`model`]). At the Nth mutating request (a sync
//! counts) it cuts the power: that request and every later one fail with `EIO`, and
//! [`Mounted::finish`] writes back to the backing directory only what a disk would still hold:
//! what was synced (the strict cut), or that and a seeded random subset of what was not (the
//! reordering cut). Unmounted without a cut, everything is written back (a clean shutdown).
//!
//! `syncfs(2)` on a FUSE mount never reaches the filesystem. A process that wants its `syncfs`
//! seen (rekey's `crash-points` hook) also `fsync`s the control file [`CONTROL`] at the mount's
//! root: that makes everything durable, as a `syncfs` that reached a disk would.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod model;
mod serve;

pub use model::Survives;
use model::{Image, Meta, Model, New, ROOT};

/// The control file at the mount's root whose `fsync` stands for a `syncfs` of the mount.
pub const CONTROL: &str = ".crashfs-syncfs";

/// A mounted crash filesystem.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    shared: serve::Shared,
    backing: PathBuf,
    mountpoint: PathBuf,
}

/// Mounts `backing`'s contents at `mountpoint`; the power goes at the `cut_at`th mutating
/// request, if given. Needs root (or `fusermount3`) and `/dev/fuse`.
pub fn mount(backing: &Path, mountpoint: &Path, cut_at: Option<u64>) -> io::Result<Mounted> {
    let root = fs::metadata(backing)?;
    let mut model = Model::new(meta_of(&root));
    load(&mut model, backing, ROOT, &mut HashMap::new())?;
    let own = Meta {
        mode: 0o600,
        uid: root.uid(),
        gid: root.gid(),
    };
    let control = model
        .create(ROOT, CONTROL.as_ref(), New::File, own, true)
        .map_err(io::Error::from_raw_os_error)?;
    let names = names_in(&model);
    let state = serve::State {
        model,
        ops: 0,
        cut_at,
        cut: false,
        control,
        syncfs: 0,
        trace: Vec::new(),
        names,
    };
    let shared: serve::Shared = Arc::new((Mutex::new(state), Condvar::new()));
    let mut config = fuser::Config::default();
    config.n_threads = Some(2);
    config.mount_options = vec![
        fuser::MountOption::FSName("crashfs".into()),
        fuser::MountOption::Subtype("crashfs".into()),
    ];
    let session = fuser::spawn_mount(serve::CrashFs(shared.clone()), mountpoint, &config)?;
    Ok(Mounted {
        session: Some(session),
        shared,
        backing: backing.to_path_buf(),
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl Mounted {
    fn state(&self) -> std::sync::MutexGuard<'_, serve::State> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating requests served so far (the one the cut fell on included).
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Every mutating request so far, in order (the first is request 1): `write journal.jsonl`,
    /// `rename cert.pem`, `fsyncdir svc-001`: what a test picks its cut points from.
    pub fn trace(&self) -> Vec<String> {
        self.state().trace.clone()
    }

    /// `syncfs` calls seen through the control file.
    pub fn syncfs_seen(&self) -> u64 {
        self.state().syncfs
    }

    /// Whether the power is cut.
    pub fn is_cut(&self) -> bool {
        self.state().cut
    }

    /// Cuts the power now: every later request fails.
    pub fn cut_now(&self) {
        self.state().cut = true;
        self.shared.1.notify_all();
    }

    /// Waits until the power is cut, at most `timeout`; whether it is.
    pub fn wait_cut(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut state = self.state();
        while !state.cut {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .1
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Unmounts and writes back to the backing directory what survives: everything without a
    /// cut, else what `survives` says. Whoever used the mount must be gone (killed) by now.
    /// Returns whether the power was cut.
    pub fn finish(mut self, survives: Survives) -> io::Result<bool> {
        let image = {
            let state = self.state();
            let how = if state.cut {
                survives
            } else {
                Survives::Everything
            };
            (state.model.image(how, state.control), state.cut)
        };
        self.unmount();
        write_back(&self.backing, &image.0)?;
        Ok(image.1)
    }

    fn unmount(&mut self) {
        let dev = fs::metadata(&self.mountpoint).map(|m| m.dev()).ok();
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes()).ok();
        if let Some(path) = path {
            // SAFETY: a valid C string; a lazy unmount never waits on open files.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(dev) = dev {
            // Files still open (a hook a killed run left) would keep the connection alive.
            let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
            let _ = fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), "1");
        }
        if let Some(session) = self.session.take() {
            let until = Instant::now() + Duration::from_secs(10);
            while !session.guard.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if session.guard.is_finished() {
                let _ = session.join();
            } else {
                std::mem::forget(session);
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.unmount();
        }
    }
}

/// Every inode's name, for the trace.
fn names_in(model: &Model) -> HashMap<u64, std::ffi::OsString> {
    let mut names = HashMap::new();
    let mut dirs = vec![ROOT];
    while let Some(dir) = dirs.pop() {
        for (name, ino) in model.entries(dir).unwrap_or_default() {
            if model.entries(ino).is_ok() {
                dirs.push(ino);
            }
            names.insert(ino, name);
        }
    }
    names
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    }
}

/// Reads the directory `dir` into the model below `parent`, durable, hard links kept.
fn load(
    model: &mut Model,
    dir: &Path,
    parent: u64,
    seen: &mut HashMap<(u64, u64), u64>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let fail = io::Error::from_raw_os_error;
    for entry in entries {
        let (name, path) = (entry.file_name(), entry.path());
        let m = fs::symlink_metadata(&path)?;
        let kind = m.file_type();
        if kind.is_dir() {
            let ino = model
                .create(parent, &name, New::Dir, meta_of(&m), true)
                .map_err(fail)?;
            load(model, &path, ino, seen)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path)?.into_os_string();
            model
                .create(parent, &name, New::Link(target), meta_of(&m), true)
                .map_err(fail)?;
        } else if kind.is_file() {
            if let Some(&ino) = seen.get(&(m.dev(), m.ino())) {
                model.link(ino, parent, &name, true).map_err(fail)?;
                continue;
            }
            let ino = model
                .create(parent, &name, New::File, meta_of(&m), true)
                .map_err(fail)?;
            model.write(ino, 0, &fs::read(&path)?).map_err(fail)?;
            model.sync(ino).map_err(fail)?;
            seen.insert((m.dev(), m.ino()), ino);
        }
        // Anything else (a FIFO a hostile test left) is not carried.
    }
    Ok(())
}

/// Replaces the backing directory's contents with `image`.
fn write_back(backing: &Path, image: &Image) -> io::Result<()> {
    for entry in fs::read_dir(backing)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    let Image::Dir(children, meta) = image else {
        return Err(io::Error::other("the root is not a directory"));
    };
    let mut links = HashMap::new();
    for (name, child) in children {
        write_node(&backing.join(name), child, &mut links)?;
    }
    set_meta(backing, meta)
}

fn write_node(path: &Path, image: &Image, links: &mut HashMap<u64, PathBuf>) -> io::Result<()> {
    match image {
        Image::Link(target) => std::os::unix::fs::symlink(target, path),
        Image::File(ino, bytes, meta) => {
            if let Some(first) = links.get(ino) {
                return fs::hard_link(first, path);
            }
            fs::write(path, bytes)?;
            links.insert(*ino, path.to_path_buf());
            set_meta(path, meta)
        }
        Image::Dir(children, meta) => {
            fs::create_dir(path)?;
            for (name, child) in children {
                write_node(&path.join(name), child, links)?;
            }
            set_meta(path, meta)
        }
    }
}

fn set_meta(path: &Path, meta: &Meta) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
}
