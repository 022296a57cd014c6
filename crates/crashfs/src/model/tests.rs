//! The model's cuts, without FUSE.

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

/// The bytes of the file at `path`, in the tree a cut leaves.
fn placed(image: &Image, path: &[&str]) -> Option<Vec<u8>> {
    let mut at = image;
    for part in path {
        let Image::Dir(children, _) = at else {
            return None;
        };
        at = children.get(OsStr::new(part))?;
    }
    match at {
        Image::File(_, bytes, _) => Some(bytes.clone()),
        _ => None,
    }
}

#[test]
fn an_exchange_between_two_directories_is_durable_in_both_or_neither() {
    let mut fs = Model::new(M);
    let tree = |fs: &mut Model, dir: &str, bytes: &[u8]| {
        let d = fs.create(ROOT, OsStr::new(dir), New::Dir, M, true).unwrap();
        let sub = fs.create(d, OsStr::new("t"), New::Dir, M, true).unwrap();
        let f = fs.create(sub, OsStr::new("f"), New::File, M, true).unwrap();
        fs.write(f, 0, bytes).unwrap();
        fs.sync(f).unwrap();
        d
    };
    let (a, b) = (tree(&mut fs, "a", b"old"), tree(&mut fs, "b", b"new"));
    fs.exchange(a, OsStr::new("t"), b, OsStr::new("t")).unwrap();
    let now = |image: &Image| {
        (
            placed(image, &["a", "t", "f"]).unwrap(),
            placed(image, &["b", "t", "f"]).unwrap(),
        )
    };
    let (old, new) = (b"old".to_vec(), b"new".to_vec());
    assert_eq!(
        now(&fs.image(Survives::Everything, 0)),
        (new.clone(), old.clone())
    );
    assert_eq!(
        now(&fs.image(Survives::Synced, 0)),
        (old.clone(), new.clone())
    );
    // A reordering cut keeps both halves or neither, whatever its seed.
    for seed in 0..64 {
        let (x, y) = now(&fs.image(Survives::Some(seed), 0));
        assert_ne!(x, y, "seed {seed}: one tree under two names");
    }
    // The sync of either directory makes it durable in both.
    let mut other = fs.clone();
    fs.sync(b).unwrap();
    assert_eq!(
        now(&fs.image(Survives::Synced, 0)),
        (new.clone(), old.clone())
    );
    other.sync(a).unwrap();
    assert_eq!(now(&other.image(Survives::Synced, 0)), (new, old));
}

#[test]
fn an_exchange_in_one_directory_is_one_step() {
    let mut fs = Model::new(M);
    for (name, bytes) in [("x", b"old"), ("y", b"new")] {
        let f = fs
            .create(ROOT, OsStr::new(name), New::File, M, true)
            .unwrap();
        fs.write(f, 0, bytes).unwrap();
        fs.sync(f).unwrap();
    }
    fs.exchange(ROOT, OsStr::new("x"), ROOT, OsStr::new("y"))
        .unwrap();
    assert_eq!(file(&fs.image(Survives::Synced, 0), "x").unwrap(), b"old");
    assert_eq!(
        file(&fs.image(Survives::Everything, 0), "x").unwrap(),
        b"new"
    );
    fs.sync(ROOT).unwrap();
    let cut = fs.image(Survives::Synced, 0);
    assert_eq!(
        (file(&cut, "x").unwrap(), file(&cut, "y").unwrap()),
        (&b"new".to_vec(), &b"old".to_vec())
    );
}
