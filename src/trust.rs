//! What rekey trusts, and the check that nobody else can change it (docs/design.md §8).
//!
//! rekey runs as root over a fleet that other users can write to. What may supply a command or a
//! place to write — the fleet root, `rekey.toml`, `ca/`, `.rekey/` and `hooks/`, and every
//! directory on the way to them from `/` — must be owned by root or the invoking user, be
//! writable by nobody else, and never be a symbolic link (as sshd's StrictModes, sudo and cron
//! check). This module finds what breaks that rule; it changes nothing. Writing commands refuse to
//! start on what it finds; readers warn.
//!
//! Everything under `nodes/` is untrusted by design and is not checked here: it is walked through
//! directory handles (`fsio::IdentityDir`), never through paths.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A trusted path that someone other than root or the invoking user could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsafe {
    pub(crate) path: PathBuf,
    pub(crate) fault: Fault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A symbolic link: what it points to can be anywhere.
    Link,
    /// Owned by another user, who can change it.
    Owner { uid: u32, mode: u32 },
    /// Writable by its group or by others (and not a sticky directory owned by root).
    Writable { uid: u32, mode: u32 },
    /// Not what it must be: a directory, a regular file, or (where either will do) one of them.
    Kind(&'static str),
    /// Could not be looked at (not for want of permission: see [`check`]).
    Unreadable(String),
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        let fix = |f: &mut std::fmt::Formatter<'_>, uid: u32, mode: u32, what: &str| {
            write!(
                f,
                "{path} (owner uid {uid}, mode {:04o}) {what}: only root or the user running rekey \
                 may be able to change it; fix: chown {owner} {path}; chmod go-w {path}",
                mode & 0o7777,
                owner = owner_to_give(),
            )
        };
        match &self.fault {
            Fault::Link => write!(
                f,
                "{path} is a symbolic link: rekey follows no link to what it trusts; replace it \
                 with the file or directory itself"
            ),
            Fault::Owner { uid, mode } => fix(f, *uid, *mode, "belongs to another user"),
            Fault::Writable { uid, mode } => {
                fix(f, *uid, *mode, "is writable by its group or by others")
            }
            Fault::Kind(must) => write!(f, "{path} is not {must}"),
            Fault::Unreadable(why) => write!(f, "{path} cannot be checked: {why}"),
        }
    }
}

/// `root:root` for root; the invoking user's uid otherwise.
fn owner_to_give() -> String {
    match euid() {
        0 => "root:root".to_string(),
        uid => uid.to_string(),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// Every trusted path of the fleet at `root` (canonical) that another user could change,
/// in the order found: the directories from `/` to the root, the root, `rekey.toml`, `ca/`,
/// `.rekey/` (its files, `runs/` and each run's directory and files; a run's `backup/` tree is
/// checked at its top, since only its owner can add to a directory it alone may write), and
/// `hooks/` with every executable in it. What does not exist is fine. What the invoking user may
/// not even look at (a monitoring user below a root-only `.rekey/`) is skipped: such a user runs
/// nothing from it.
pub(crate) fn check(root: &Path) -> Vec<Unsafe> {
    let mut found = Vec::new();
    let mut ancestors: Vec<&Path> = root.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        look(dir, Expect::Dir, Sticky::Allowed, &mut found);
    }
    look(root, Expect::Dir, Sticky::Refused, &mut found);
    look(&root.join("rekey.toml"), Expect::File, Sticky::Refused, &mut found);
    let ca = crate::ca::CaDir::of(root);
    if look(ca.path(), Expect::Dir, Sticky::Refused, &mut found) {
        let active = ca.active();
        for file in [active.cert, active.key, ca.bundle()] {
            look(&file, Expect::File, Sticky::Refused, &mut found);
        }
        // A CA rotation's other CA is trusted as the active one is (docs/design.md §3a).
        for (dir, pair) in [
            (ca.next_dir(), ca.next()),
            (ca.previous_dir(), ca.previous()),
        ] {
            if look(&dir, Expect::Dir, Sticky::Refused, &mut found) {
                for file in [pair.cert, pair.key] {
                    look(&file, Expect::File, Sticky::Refused, &mut found);
                }
            }
        }
    }
    state(&crate::store::Store::of(root), &mut found);
    let hooks = root.join("hooks");
    if look(&hooks, Expect::Dir, Sticky::Refused, &mut found) {
        for kind in ["deploy", "post"] {
            let dir = hooks.join(kind);
            if look(&dir, Expect::Dir, Sticky::Refused, &mut found) {
                for entry in entries(&dir, &mut found) {
                    look(&entry, Expect::Any, Sticky::Refused, &mut found);
                }
            }
        }
    }
    found
}

/// `.rekey/` and what rekey reads from it or writes in it.
fn state(store: &crate::store::Store, found: &mut Vec<Unsafe>) {
    if !look(store.dir(), Expect::Dir, Sticky::Refused, found) {
        return;
    }
    for file in [store.lock_path(), store.audit_log()] {
        look(&file, Expect::File, Sticky::Refused, found);
    }
    let runs = store.runs_dir();
    if !look(&runs, Expect::Dir, Sticky::Refused, found) {
        return;
    }
    for run in entries(&runs, found) {
        if look(&run, Expect::Any, Sticky::Refused, found) && run.is_dir() {
            for entry in entries(&run, found) {
                look(&entry, Expect::Any, Sticky::Refused, found);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Dir,
    File,
    Any,
}

/// Whether a directory writable by others passes because it is sticky and owned by root or the
/// invoking user (`/tmp`): there, only an entry's owner may rename or remove it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sticky {
    Allowed,
    Refused,
}

/// Checks one path; says whether it is a directory worth looking into (it exists, is no link,
/// and could be read).
fn look(path: &Path, expect: Expect, sticky: Sticky, found: &mut Vec<Unsafe>) -> bool {
    let mut fault = |fault| {
        found.push(Unsafe {
            path: path.to_path_buf(),
            fault,
        })
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return false,
        Err(e) => {
            fault(Fault::Unreadable(e.to_string()));
            return false;
        }
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        fault(Fault::Link);
        return false;
    }
    let fits = match expect {
        Expect::Dir => kind.is_dir(),
        Expect::File => kind.is_file(),
        Expect::Any => kind.is_dir() || kind.is_file(),
    };
    if !fits {
        fault(Fault::Kind(match expect {
            Expect::Dir => "a directory",
            Expect::File => "a regular file",
            Expect::Any => "a regular file or a directory",
        }));
        return false;
    }
    let (uid, mode) = (meta.uid(), meta.permissions().mode());
    let trusted_owner = uid == 0 || uid == euid();
    let sticky_ok = sticky == Sticky::Allowed && kind.is_dir() && mode & libc::S_ISVTX != 0;
    let others_write = mode & 0o002 != 0
        || (mode & 0o020 != 0 && !group_is_the_owner_alone(meta.gid(), uid));
    if !trusted_owner {
        fault(Fault::Owner { uid, mode });
    } else if others_write && !sticky_ok {
        fault(Fault::Writable { uid, mode });
    }
    kind.is_dir()
}

/// Whether the group `gid` has exactly one member, the owner `uid` (a user private group, as
/// `umask 002` systems give every user): its write bit then lets nobody else in. The rule of
/// OpenSSH's `secure_permissions`: every account whose primary group it is must be the owner, its
/// listed members at most the owner, and it must have a member. Asked of the system's user and
/// group databases (NSS) only when a trusted path is group-writable.
fn group_is_the_owner_alone(gid: u32, uid: u32) -> bool {
    // getpwent walks one process-wide cursor: one walk at a time.
    static WALK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let Some(owner) = user_name(uid) else {
        return false;
    };
    let Some(listed) = group_members(gid) else {
        return false;
    };
    if listed.iter().any(|m| *m != owner) {
        return false;
    }
    let _walk = WALK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut primary = 0;
    let mut alone = true;
    // SAFETY: setpwent/getpwent/endpwent under the lock; each entry is read before the next call.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            if (*pw).pw_gid == gid {
                primary += 1;
                alone &= (*pw).pw_uid == uid;
            }
        }
        libc::endpwent();
    }
    alone && (primary > 0 || !listed.is_empty())
}

/// The name of the user `uid`, from the user database.
fn user_name(uid: u32) -> Option<Vec<u8>> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: getpwuid_r fills `pw` with pointers into `buf`, both alive while read here.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: pw_name points to a NUL-terminated string in `buf`.
    Some(unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec())
}

/// The members the group database lists for `gid` (not those whose primary group it is).
fn group_members(gid: u32) -> Option<Vec<Vec<u8>>> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: getgrgid_r fills `gr` with pointers into `buf`, both alive while read here.
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    let mut members = Vec::new();
    // SAFETY: gr_mem is a NULL-terminated array of NUL-terminated strings in `buf`.
    unsafe {
        let mut at = gr.gr_mem;
        while !at.is_null() && !(*at).is_null() {
            members.push(std::ffi::CStr::from_ptr(*at).to_bytes().to_vec());
            at = at.add(1);
        }
    }
    Some(members)
}

/// The entries of `dir` (hidden ones included: a hidden hook is not run, but a hidden run
/// directory is still rekey's), sorted; an unreadable listing is a fault unless for want of
/// permission.
fn entries(dir: &Path, found: &mut Vec<Unsafe>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(read) => {
            let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            paths
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Vec::new(),
        Err(e) => {
            found.push(Unsafe {
                path: dir.to_path_buf(),
                fault: Fault::Unreadable(e.to_string()),
            });
            Vec::new()
        }
    }
}

/// Refuses a writing run while anything it trusts could be changed by someone else: one error
/// naming every such path, its owner and mode, and the fix.
pub(crate) fn require(root: &Path) -> anyhow::Result<()> {
    let found = check(root);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    anyhow::bail!(
        "refusing to write: rekey trusts only what root or the user running it alone can change, \
         and {} that must be so {} not (another user could make this run write or execute what \
         they choose); nothing was changed: {}",
        crate::count::count(found.len(), "path", "paths"),
        if found.len() == 1 { "is" } else { "are" },
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fleet() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["ca", "nodes", ".rekey/runs/1", "hooks/deploy"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("rekey.toml"), "version = 1\n").unwrap();
        std::fs::write(dir.path().join(".rekey/runs/1/journal.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("hooks/deploy/reload"), "").unwrap();
        for (path, mode) in [
            ("", 0o755),
            ("ca", 0o755),
            (".rekey", 0o700),
            (".rekey/runs", 0o700),
            (".rekey/runs/1", 0o700),
            (".rekey/runs/1/journal.jsonl", 0o600),
            ("hooks", 0o755),
            ("hooks/deploy", 0o755),
            ("hooks/deploy/reload", 0o755),
            ("rekey.toml", 0o644),
        ] {
            let p = dir.path().join(path);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    fn faults(root: &Path) -> Vec<(String, &'static str)> {
        check(root)
            .into_iter()
            .filter(|u| u.path.starts_with(root))
            .map(|u| {
                let rel = u.path.strip_prefix(root).unwrap().display().to_string();
                let kind = match u.fault {
                    Fault::Link => "link",
                    Fault::Owner { .. } => "owner",
                    Fault::Writable { .. } => "writable",
                    Fault::Kind(_) => "kind",
                    Fault::Unreadable(_) => "unreadable",
                };
                (rel, kind)
            })
            .collect()
    }

    #[test]
    fn a_fleet_only_its_owner_can_change_passes() {
        let dir = fleet();
        assert_eq!(faults(dir.path()), vec![]);
    }

    #[test]
    fn what_others_could_change_is_named() {
        let cases: [(&str, &str, u32); 5] = [
            ("policy writable by all", "rekey.toml", 0o666),
            ("state writable by all", ".rekey", 0o777),
            ("a journal writable by the group", ".rekey/runs/1/journal.jsonl", 0o620),
            ("hooks folder writable by all", "hooks/deploy", 0o1777),
            ("a hook writable by all", "hooks/deploy/reload", 0o777),
        ];
        for (name, path, mode) in cases {
            let dir = fleet();
            let p = dir.path().join(path);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            // A group others belong to (nobody's): the owner's own group may write (below).
            if mode & 0o020 != 0 && std::os::unix::fs::lchown(&p, None, Some(65534)).is_err() {
                continue; // only root may give a file to a group it is not in
            }
            assert_eq!(
                faults(dir.path()),
                vec![(path.to_string(), "writable")],
                "{name}"
            );
            let said = check(dir.path())[0].to_string();
            assert!(said.contains(&format!("mode {mode:04o}")), "{name}: {said}");
            assert!(said.contains("chmod go-w"), "{name}: {said}");
        }
    }

    #[test]
    fn a_group_of_the_owner_alone_may_write() {
        // Root's group has root as its only primary member on any sane system, and `nogroup`
        // (or `nobody`'s group) is not root's.
        assert!(group_is_the_owner_alone(0, 0));
        assert!(!group_is_the_owner_alone(65534, 0));
    }

    #[test]
    fn links_to_what_is_trusted_are_named() {
        let dir = fleet();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(dir.path().join("hooks/deploy")).unwrap();
        symlink(elsewhere.path(), dir.path().join("hooks/deploy")).unwrap();
        assert_eq!(faults(dir.path()), vec![("hooks/deploy".into(), "link")]);
    }
}
