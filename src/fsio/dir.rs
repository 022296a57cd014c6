//! Reading through handles: an open directory ([`Dir`]) whose entries are read without walking
//! its path again, and the bounded, link-refusing read of a credential into a [`Slot`], by path
//! or by entry. Also the exclusive copy of an open file, which a backup falls back to.
//!
//! This module must not interpret contents (callers get bytes or a stated reason why there are
//! none), and imports nothing of the crate: `fsio` and `fsio::identity` both build on it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest credential file rekey reads; anything bigger is a problem, never read in full.
pub(crate) const MAX_CREDENTIAL_BYTES: u64 = 1024 * 1024;

/// What a credential path held when it was read.
#[derive(Clone, PartialEq, Eq)]
pub enum Slot {
    /// No file at that path.
    Absent,
    /// The file's bytes (at most [`MAX_CREDENTIAL_BYTES`]).
    Present(Vec<u8>),
    /// Something is there but it cannot be used: a link, a FIFO, too large, a read that failed.
    Unusable(String),
    /// A file is there that this user may not open (`EACCES`): not a fault of the file, and
    /// nothing is known of what it holds (docs/design.md §5, "not readable by you").
    NotReadable,
}

/// What is said of a file this user may not open.
pub(crate) const NOT_READABLE: &str = "is not readable by you";

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Absent => f.write_str("Absent"),
            Slot::Present(bytes) => write!(f, "Present([{} bytes elided])", bytes.len()),
            Slot::Unusable(why) => f.debug_tuple("Unusable").field(why).finish(),
            Slot::NotReadable => f.write_str("NotReadable"),
        }
    }
}

/// Reads a credential file without following a symbolic link, without blocking on a FIFO and
/// without reading more than [`MAX_CREDENTIAL_BYTES`].
#[inline]
pub fn read_credential(path: &Path) -> Slot {
    read_opened(|extra| {
        OpenOptions::new()
            .read(true)
            .custom_flags(READ_FLAGS | extra)
            .open(path)
    })
    .0
}

/// Which file a name led to: device and inode numbers.
pub type FileId = (u64, u64);

const READ_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// An open directory, to read several files of one identity without walking its path again
/// (and without the directory being swapped for a link between two reads).
#[derive(Debug)]
pub struct Dir(pub(super) File);

impl Dir {
    #[inline]
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map(Dir)
    }

    /// The directory itself: its device and inode.
    #[inline]
    pub(crate) fn file_id(&self) -> Option<FileId> {
        use std::os::fd::AsRawFd;
        // fstat(2) on the open directory: the one that was read, whatever is at its name now
        // (not File::metadata, a statx with an empty path, which costs a path lookup).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a stat buffer.
        (unsafe { libc::fstat(self.0.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    }

    /// [`read_credential`] for the entry `name` of this directory, with the file it read, kept
    /// open ([`Kept`]).
    #[inline]
    pub fn read_credential(&self, name: &str) -> (Slot, Option<FileId>, Kept) {
        let Ok(name) = std::ffi::CString::new(name) else {
            return (
                Slot::Unusable("has an invalid name".to_string()),
                None,
                Kept(None),
            );
        };
        read_opened_kept(|extra| {
            use std::os::fd::{AsRawFd, FromRawFd};
            // SAFETY: a valid directory descriptor and a NUL-terminated name; the returned
            // descriptor is owned by the File from here on.
            let fd = unsafe {
                libc::openat(
                    self.0.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | READ_FLAGS | extra,
                )
            };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(unsafe { File::from_raw_fd(fd) })
            }
        })
    }

    /// The file the entry `name` is now (a link itself, not what it points to); `None` when
    /// there is no such entry.
    #[inline]
    pub(crate) fn entry(&self, name: &str) -> Option<FileId> {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(name).ok()?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory descriptor, a NUL-terminated name and a stat buffer.
        let rc = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        (rc == 0).then_some((st.st_dev, st.st_ino))
    }

    /// One reading of this directory's entries (two system calls for a small directory, three
    /// with `rewind`): the names that start with `prefix`, and the inode number each of `names`
    /// has (`None`: no such entry), given only when the entries came from one `getdents` call,
    /// which a rename in the directory cannot come in the middle of (a directory too large for
    /// one is read in several, and a rename between two would mix what each saw). `rewind` reads
    /// from the start a handle whose entries were read before (a fresh one is at its start).
    pub(crate) fn entries<const N: usize>(
        &self,
        prefix: &str,
        names: [&str; N],
        rewind: bool,
    ) -> io::Result<Entries<N>> {
        if rewind {
            rustix::fs::seek(&self.0, rustix::fs::SeekFrom::Start(0))?;
        }
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = rustix::fs::RawDir::new(&self.0, &mut buf);
        let (mut found, mut inodes) = (Vec::new(), [None; N]);
        // The `getdents` calls that gave entries (the last call, which gives none, aside).
        let mut calls = 0;
        loop {
            let refill = entries.is_buffer_empty();
            let Some(entry) = entries.next() else {
                break;
            };
            calls += usize::from(refill);
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name.starts_with(prefix.as_bytes()) {
                found.push(String::from_utf8_lossy(name).into_owned());
            }
            if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
                inodes[i] = Some(entry.ino());
            }
        }
        Ok(Entries {
            prefixed: found,
            inodes: (calls <= 1).then_some(inodes),
        })
    }
}

/// What one reading of a directory's entries found ([`Dir::entries`]).
pub(crate) struct Entries<const N: usize> {
    /// The names that start with the prefix asked for.
    pub(crate) prefixed: Vec<String>,
    /// The inode number of each name asked for (`None`: no such entry), when the entries came
    /// from one `getdents` call.
    pub(crate) inodes: Option<[Option<u64>; N]>,
}

/// A file read, kept open until this is dropped: while it is, no other file can have its inode
/// number (a file removed keeps its inode until its last descriptor closes), so that a name
/// found later to lead to that number leads to the file read, not to one made since on a
/// number freed meanwhile.
#[derive(Debug)]
pub struct Kept(#[expect(dead_code, reason = "held for its descriptor")] Option<File>);

/// Reads the file `open` opens (given flags to add to its own), as [`read_credential`] reads a
/// path: what it holds and which file it was.
pub(super) fn read_opened(open: impl Fn(i32) -> io::Result<File>) -> (Slot, Option<FileId>) {
    let (slot, id, _) = read_opened_kept(open);
    (slot, id)
}

/// [`read_opened`], the file kept open ([`Kept`]).
fn read_opened_kept(open: impl Fn(i32) -> io::Result<File>) -> (Slot, Option<FileId>, Kept) {
    let none = |slot| (slot, None, Kept(None));
    // Reading must not dirty the inode (an atime write per file at 10^5 identities); O_NOATIME
    // is refused for files we do not own unless privileged, then a plain open will do.
    let opened = match open(libc::O_NOATIME) {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    };
    let mut file = match opened {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return none(Slot::Absent),
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return none(Slot::Unusable("is a symbolic link".to_string()));
        }
        // A socket cannot be opened at all.
        Err(err) if err.raw_os_error() == Some(libc::ENXIO) => {
            return none(Slot::Unusable("is not a regular file".to_string()));
        }
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return none(Slot::NotReadable);
        }
        Err(err) => return none(Slot::Unusable(format!("cannot be opened: {err}"))),
    };
    use std::os::fd::AsRawFd;
    // fstat(2), not File::metadata (statx with an empty path, which costs a path lookup).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a stat buffer.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        let err = io::Error::last_os_error();
        return none(Slot::Unusable(format!("cannot be read: {err}")));
    }
    let id = Some((st.st_dev, st.st_ino));
    let slot = match read_regular_bounded(&mut file, &st) {
        Ok(slot) => slot,
        Err(err) => Slot::Unusable(format!("cannot be read: {err}")),
    };
    (slot, id, Kept(Some(file)))
}

#[inline]
fn read_regular_bounded(file: &mut File, st: &libc::stat) -> io::Result<Slot> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(Slot::Unusable("is not a regular file".to_string()));
    }
    let len = st.st_size as u64;
    if len > MAX_CREDENTIAL_BYTES {
        return Ok(Slot::Unusable("is larger than 1 MiB".to_string()));
    }
    let mut bytes = Vec::new();
    read_known_size(file, len, &mut bytes)?;
    if bytes.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Ok(Slot::Unusable("is larger than 1 MiB".to_string()));
    }
    Ok(Slot::Present(bytes))
}

/// Reads `file`, whose size fstat gave as `len`, into `bytes` (emptied first): to that size
/// with no probe read for the end of the file, and a file that grew past it on to the cap
/// (1 MiB and one byte, so that a caller sees it is too large). One allocation of the size
/// known, so that a file whose size did not change leaves no copy of a secret behind in a
/// buffer that grew.
pub(super) fn read_known_size(file: &mut File, len: u64, bytes: &mut Vec<u8>) -> io::Result<()> {
    let len = len.min(MAX_CREDENTIAL_BYTES);
    bytes.clear();
    bytes.resize(len as usize + 1, 0);
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if filled as u64 == len {
            break;
        }
    }
    bytes.truncate(filled);
    if filled as u64 > len {
        file.take(MAX_CREDENTIAL_BYTES + 1 - filled as u64)
            .read_to_end(bytes)?;
    }
    Ok(())
}

/// Writes `bytes` into a new file `to` (mode 0600, created exclusively, never through a link);
/// on failure the new file is removed.
pub(super) fn write_exclusive(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)?;
    let written = copy.write_all(bytes);
    if written.is_err() {
        let _ = std::fs::remove_file(to);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_refuse_links_fifos_and_oversize_files() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"hello").unwrap();
        assert_eq!(read_credential(&real), Slot::Present(b"hello".to_vec()));
        assert_eq!(read_credential(&dir.path().join("missing")), Slot::Absent);

        let link = dir.path().join("link");
        symlink(&real, &link).unwrap();
        assert_eq!(
            read_credential(&link),
            Slot::Unusable("is a symbolic link".into())
        );

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_credential(&fifo),
            Slot::Unusable("is not a regular file".into())
        );

        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(2 << 30).unwrap();
        assert_eq!(
            read_credential(&big),
            Slot::Unusable("is larger than 1 MiB".into())
        );
        assert_eq!(
            read_credential(dir.path()),
            Slot::Unusable("is not a regular file".into())
        );
    }

    /// A file is read to the size its `fstat` gave; one that grew since is read on, to the cap
    /// and one byte past it, so that its reader sees it changed or is too large; one that shrank
    /// is read as it is now.
    #[test]
    fn a_file_read_to_its_known_size_is_read_whole_whatever_it_became() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let read = |len: u64| {
            let mut bytes = b"left from before".to_vec();
            read_known_size(&mut File::open(&path).unwrap(), len, &mut bytes).unwrap();
            bytes
        };
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read(10), b"0123456789");
        assert_eq!(read(4), b"0123456789", "grew since its size was taken");
        assert_eq!(read(40), b"0123456789", "shrank since its size was taken");
        let big = vec![7u8; MAX_CREDENTIAL_BYTES as usize + 4096];
        std::fs::write(&path, &big).unwrap();
        assert_eq!(read(100).len() as u64, MAX_CREDENTIAL_BYTES + 1);
        assert_eq!(read(u64::MAX).len() as u64, MAX_CREDENTIAL_BYTES + 1);
    }

    /// A listing gives each name's inode only when one `getdents` call read the whole
    /// directory: entries read over several calls may straddle a rename.
    #[test]
    fn a_listing_names_inodes_only_when_read_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), b"c").unwrap();
        std::fs::write(dir.path().join(".rekey-new.x"), b"t").unwrap();
        // As the directory lists it (on some filesystems, overlayfs, not what stat says).
        let ino = std::fs::read_dir(dir.path())
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.file_name() == "cert.pem")
            .map(|e| std::os::unix::fs::DirEntryExt::ino(&e))
            .unwrap();
        let open = Dir::open(dir.path()).unwrap();
        let small = open.entries(".rekey-new.", ["cert.pem", "key.pem"], false).unwrap();
        assert_eq!(small.prefixed, [".rekey-new.x"]);
        assert_eq!(small.inodes, Some([Some(ino), None]));
        let again = open.entries(".rekey-new.", ["cert.pem", "key.pem"], true).unwrap();
        assert_eq!(again.inodes, small.inodes, "rewound, the same listing");
        // Some 200 entries of 100-byte names: more than a 4 KiB buffer takes at once.
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("{i:0>100}")), b"").unwrap();
        }
        let large = Dir::open(dir.path()).unwrap();
        let listed = large.entries(".rekey-new.", ["cert.pem"], false).unwrap();
        assert_eq!(listed.prefixed, [".rekey-new.x"]);
        assert_eq!(listed.inodes, None);
    }
}
