//! The old file of an identity is opened once: whatever its directory's owner puts at its name
//! afterwards (a link, a FIFO, a huge file, other bytes), the backup and the new file's mode and
//! owner come from the file rekey judged.
use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// A fleet root with one identity `nodes/n/s` holding `cert.pem`, its handle and the file's
/// digest.
fn identity() -> (tempfile::TempDir, RootDir, IdentityDir, Digest) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nodes/n/s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), b"judged bytes").unwrap();
    std::fs::set_permissions(dir.join("cert.pem"), std::fs::Permissions::from_mode(0o640))
        .unwrap();
    let fleet = RootDir::open(root.path()).unwrap();
    let id = IdentityId::new("n", "s").unwrap();
    let handle = fleet.identity(&id).unwrap();
    (root, fleet, handle, Digest::of(b"judged bytes"))
}

#[test]
fn what_is_at_the_name_now_is_refused_unless_it_is_the_file_judged() {
    let (root, _fleet, dir, judged) = identity();
    let live = root.path().join("nodes/n/s/cert.pem");
    let refused = |what: &str| match dir.open_judged("cert.pem", &judged) {
        Err(JudgedError::Changed(said)) => said,
        Ok(_) => panic!("{what}: opened"),
        Err(JudgedError::Io(e)) => panic!("{what}: {e}"),
    };
    std::fs::write(&live, b"other bytes").unwrap();
    assert_eq!(refused("other bytes"), "changed since it was read");
    // Two mebibytes: read no further than the cap.
    std::fs::write(&live, vec![b'x'; 2 << 20]).unwrap();
    assert_eq!(refused("a huge file"), "changed since it was read");
    std::fs::remove_file(&live).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &live).unwrap();
    assert_eq!(refused("a link"), "is a link now");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(refused("nothing"), "is gone");
    let made = std::process::Command::new("mkfifo").arg(&live).status().unwrap();
    assert!(made.success());
    // A FIFO with no writer: opened without waiting, and refused.
    assert_eq!(refused("a FIFO"), "is not a regular file now");
}

#[test]
fn the_backup_and_the_mode_are_the_judged_files_whatever_replaces_its_name() {
    let (root, _fleet, dir, judged) = identity();
    let live = root.path().join("nodes/n/s/cert.pem");
    let old = dir.open_judged("cert.pem", &judged).unwrap();
    // The directory's owner swaps the name for another file after rekey opened it.
    std::fs::remove_file(&live).unwrap();
    std::fs::write(&live, vec![b'y'; 4 << 20]).unwrap();
    std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(old.entry.mode, 0o640, "the mode of the file judged");
    let backup = root.path().join("backup-cert.pem");
    dir.save_judged(&old, &backup).unwrap();
    assert_eq!(std::fs::read(&backup).unwrap(), b"judged bytes");
    let meta = std::fs::symlink_metadata(&backup).unwrap();
    assert!(meta.file_type().is_file(), "a file, never a link");
    assert_ne!(meta.ino(), std::fs::metadata(&live).unwrap().ino());
    // Never over an existing backup.
    let again = dir.save_judged(&old, &backup).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    assert!(!format!("{old:?}").contains("judged bytes"), "Debug shows no bytes");
}
