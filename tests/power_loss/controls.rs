//! The controls (a writer that skips a sync loses its change at a cut) and which durability
//! path a filesystem gets.

use crashfs::Survives;

/// A writer that skips a sync loses its change at a cut, and keeps it with the sync: the
/// filesystem bites where rekey must not be caught.
pub fn controls() {
    use std::io::Write;
    let backing = tempfile::tempdir().unwrap();
    let mount = tempfile::tempdir().unwrap();
    let at = |name: &str| mount.path().join(name);
    for synced in [false, true] {
        std::fs::write(backing.path().join("a"), "old").unwrap();
        std::fs::write(backing.path().join("b"), "old").unwrap();
        let m = crashfs::mount(backing.path(), mount.path(), None).unwrap();
        // Rename over `a`: the new file synced, its directory synced only when `synced`.
        let mut tmp = std::fs::File::create(at("a.tmp")).unwrap();
        tmp.write_all(b"new").unwrap();
        tmp.sync_all().unwrap();
        std::fs::rename(at("a.tmp"), at("a")).unwrap();
        // Rewrite `b` in place, synced only when `synced`.
        let mut b = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(at("b"))
            .unwrap();
        b.write_all(b"new").unwrap();
        if synced {
            std::fs::File::open(mount.path())
                .unwrap()
                .sync_all()
                .unwrap();
            b.sync_all().unwrap();
        }
        drop((tmp, b));
        m.cut_now();
        assert!(m.finish(Survives::Synced).unwrap());
        let a = std::fs::read_to_string(backing.path().join("a")).unwrap();
        let b = std::fs::read_to_string(backing.path().join("b")).unwrap();
        if synced {
            assert_eq!(
                (a.as_str(), b.as_str()),
                ("new", "new"),
                "synced changes survive a cut"
            );
        } else {
            assert_eq!(
                a, "old",
                "a rename whose directory was not synced is lost at a cut"
            );
            assert_eq!(b, "old", "a write that was not synced is lost at a cut");
        }
    }
    println!(
        "control: a writer that renames without syncing the directory loses its change at a cut (the old file is back); with the directory synced it keeps it"
    );
    println!(
        "control: a writer that writes without fsync loses its change at a cut (the old bytes are back); with fsync it keeps it"
    );
}

/// Which path a filesystem gets: FUSE (the crash filesystem) the fsync of every file and
/// directory, a local filesystem one syncfs per phase. (The rotate sweeps show rekey's runs
/// taking each: see `power_cuts_leave_every_identity_whole`.)
pub fn durability_paths() {
    use rekey::fsio::Durability;
    let local = tempfile::tempdir().unwrap();
    assert_eq!(Durability::of(local.path()).unwrap(), Durability::Syncfs);
    let (backing, mount) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = crashfs::mount(backing.path(), mount.path(), None).unwrap();
    assert_eq!(Durability::of(mount.path()).unwrap(), Durability::EachFile);
    m.finish(Survives::Everything).unwrap();
}
