//! Power loss: rekey on a filesystem that forgets what was not made durable (`crates/crashfs`,
//! FUSE). Each command is run once whole to learn its requests, then again from the same state
//! with the power cut at chosen requests: the journal's appends and syncs, the report, the hook
//! marker, the audit log, and points spread over the staging and the renames. After each cut the
//! filesystem keeps only what was synced (strict) or that and a seeded random subset of the rest
//! (reordering); it is mounted again, `status` runs, then the next writing command, and the
//! fleet is checked from outside (rekey's verifier, openssl): every identity wholly old or wholly
//! new, no empty or partial file, none lost, every run's report whole and its backups the old
//! bytes, every hook run, and `rollback` byte-exact. Needs root and /dev/fuse.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use crashfs::Survives;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

type Snapshot = BTreeMap<String, (Vec<u8>, u32)>;

/// The fleet: a few hundred identities in every key type, a tenth of them with an expired
/// token (for `recover`).
const IDENTITIES: usize = 240;

/// A lab: the backing directory (the "disk"), the mount point, and where hooks leave a line.
struct Lab {
    backing: tempfile::TempDir,
    mount: tempfile::TempDir,
    hooks: PathBuf,
    _outside: tempfile::TempDir,
    ids: Vec<String>,
}

impl Lab {
    fn root(&self) -> PathBuf {
        self.backing.path().join("fleet")
    }

    fn deploy_hook(&self) -> String {
        format!(
            "echo \"$REKEY_NODE/$REKEY_SERVICE\" >> {}/deploy.log",
            self.hooks.display()
        )
    }

    fn post_hook(&self) -> String {
        format!(
            "echo \"$REKEY_RUN_ID\" >> {}/post.log",
            self.hooks.display()
        )
    }
}

fn lab() -> Lab {
    let backing = tempfile::tempdir().unwrap();
    let mount = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = backing.path().join("fleet");
    std::fs::create_dir(&root).unwrap();
    let specs: Vec<IdentitySpec> = (0..IDENTITIES)
        .map(|i| {
            let mut s = IdentitySpec::new(
                &format!("node-{:02}", i % 12),
                &format!("svc-{i:03}"),
                issued(30),
            );
            s.key_alg = match i % 4 {
                0 => KeyAlg::P256,
                1 => KeyAlg::P384,
                2 => KeyAlg::Ed25519,
                // RSA keys cost a second each to make: a few of them.
                _ if i % 24 == 3 => KeyAlg::Rsa { bits: 2048 },
                _ => KeyAlg::P256,
            };
            if i % 10 == 9 {
                s.token = Some(issued(120)); // expired: the identity needs recover
            }
            s
        })
        .collect();
    build(&root, &ca_spec(KeyAlg::P256), &specs);
    let ids = specs
        .iter()
        .map(|s| format!("nodes/{}/{}", s.node, s.service))
        .collect();
    Lab {
        backing,
        mount,
        hooks: outside.path().to_path_buf(),
        _outside: outside,
        ids,
    }
}

/// One run of rekey on the crash filesystem, the power cut at request `cut` if given.
struct Ran {
    code: Option<i32>,
    stderr: String,
    trace: Vec<String>,
    cut: bool,
    syncfs: u64,
}

fn on_crashfs(
    lab: &Lab,
    args: &[String],
    cut: Option<u64>,
    survives: Survives,
    env: &[(&str, String)],
) -> Ran {
    let t = Instant::now();
    let m = crashfs::mount(lab.backing.path(), lab.mount.path(), cut)
        .expect("the crash filesystem mounts (root, /dev/fuse)");
    let root = lab.mount.path().join("fleet");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(args)
        .arg("--root")
        .arg(&root)
        .args(if matches!(args[0].as_str(), "rollback" | "prune") {
            &[][..] // they take no --as-of
        } else {
            &["--as-of", AS_OF][..]
        })
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(300);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if m.is_cut() || Instant::now() > until {
            // The power is gone: so is the process.
            let _ = child.kill();
            break child.wait().unwrap().code().filter(|_| false);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let (trace, syncfs) = (m.trace(), m.syncfs_seen());
    let cut = m.finish(survives).unwrap();
    eprintln!(
        "  {:?}: {} requests, {:.1?}",
        args.first(),
        trace.len(),
        t.elapsed()
    );
    Ran {
        code,
        stderr,
        trace,
        cut,
        syncfs,
    }
}

/// The requests to cut at in a run whose requests were `trace`: each journal append and its
/// sync, the report's and the hook marker's, the audit log's, and `spread` points over the rest.
fn cut_points(trace: &[String], spread: usize) -> Vec<u64> {
    let mut points: Vec<u64> = Vec::new();
    for (i, op) in trace.iter().enumerate() {
        let key = [
            "write journal.jsonl",
            "fsync journal.jsonl",
            "create hooks.pending",
            "rename report.json",
            "write audit.jsonl",
            "fsync .crashfs-syncfs",
        ];
        let after_renames = i > 0 && trace[i - 1].starts_with("rename") && op.starts_with("fsync");
        let first =
            |what: &str| op.starts_with(what) && !trace[..i].iter().any(|o| o.starts_with(what));
        if key.iter().any(|k| op == k)
            || after_renames
            || first("fsync .rekey-new")
            || first("rename .rekey-new")
            || first("rename cert.pem")
        {
            points.push(i as u64 + 1);
        }
    }
    if points.len() > 16 {
        // Hooks journal one record per call: the first steps, two in the middle, the last.
        let n = points.len();
        points = [&points[..10], &points[n / 2..n / 2 + 2], &points[n - 4..]].concat();
    }
    let n = trace.len();
    points.extend((1..=spread).map(|k| (k * n / (spread + 1)) as u64 + 1));
    points.sort_unstable();
    points.dedup();
    points
}

#[derive(Default)]
struct Tally {
    strict: usize,
    reordering: usize,
    torn: usize,
    lost: usize,
}

/// What the fleet must be after the cut run and the next writing command.
enum Expect<'a> {
    /// Every identity of `targets` wholly new, every other wholly old (against `before`).
    New { targets: &'a [String] },
    /// Byte for byte this.
    Exactly(&'a Snapshot),
}

/// Checks the fleet from outside; counts torn and lost identities.
fn check(lab: &Lab, before: &Snapshot, expect: &Expect<'_>, what: &str, tally: &mut Tally) {
    let root = lab.root();
    let now = snapshot(&root);
    for id in &lab.ids {
        let present: Vec<bool> = FILES
            .iter()
            .map(|f| now.contains_key(&format!("{id}/{f}")))
            .collect();
        if present.iter().any(|p| !p) {
            eprintln!("{what}: {id} lost a file: {present:?}");
            tally.lost += 1;
            continue;
        }
        let changed: Vec<bool> = FILES
            .iter()
            .map(|f| before[&format!("{id}/{f}")] != now[&format!("{id}/{f}")])
            .collect();
        let empty = FILES.iter().any(|f| now[&format!("{id}/{f}")].0.is_empty());
        let mixed = changed.iter().any(|c| *c) && !changed.iter().all(|c| *c);
        let wrong = match expect {
            Expect::New { targets } => changed[0] != targets.contains(id),
            Expect::Exactly(want) => FILES
                .iter()
                .any(|f| want[&format!("{id}/{f}")] != now[&format!("{id}/{f}")]),
        };
        if empty || mixed || wrong {
            eprintln!(
                "{what}: {id} is torn (changed {changed:?}, empty {empty}, expected otherwise {wrong})"
            );
            tally.torn += 1;
        }
    }
    if let Expect::Exactly(want) = expect {
        assert!(now == **want, "{what}: not byte-exact");
    }
    assert_eq!(
        temp_files(&root),
        Vec::<String>::new(),
        "{what}: temporary files left"
    );
    // Every run's backups hold the old bytes (a pruned run has none left: prune removes them,
    // and the audit log says so).
    let runs = root.join(".rekey/runs");
    let pruned = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap_or_default();
    let hidden = tempfile::tempdir().unwrap();
    for run in std::fs::read_dir(&runs).into_iter().flatten() {
        let run = run.unwrap();
        let id = run.file_name().to_string_lossy().into_owned();
        if !run.path().join("backup").exists() {
            assert!(pruned.contains(&id), "{what}: run {id} lost its backups");
            std::fs::rename(run.path(), hidden.path().join(&id)).unwrap();
        }
    }
    backups_intact(&root, what);
    for run in std::fs::read_dir(hidden.path()).unwrap() {
        let run = run.unwrap();
        std::fs::rename(run.path(), runs.join(run.file_name())).unwrap();
    }
    let runs = std::fs::read_dir(root.join(".rekey/runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        reports(&root).len(),
        runs,
        "{what}: a run without its report"
    );
    // rekey's verifier (what the crash suite reads): no identity is a problem.
    let problems: Vec<_> = states(&root)
        .into_iter()
        .filter(|(_, (s, _))| s == "problem")
        .collect();
    assert!(problems.is_empty(), "{what}: {problems:?}");
    // openssl, one identity of each key type: the certificate verifies, the key matches it.
    let ca = root.join("ca/ca.crt");
    for id in lab.ids.iter().take(4) {
        let dir = root.join(id);
        let (ok, said) = openssl_verify_at(&ca, &dir.join("cert.pem"), as_of());
        assert!(ok, "{what}: {id}: {said}");
        let from_cert = openssl(&[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            dir.join("cert.pem").to_str().unwrap(),
        ]);
        let from_key = openssl(&[
            "pkey",
            "-pubout",
            "-in",
            dir.join("key.pem").to_str().unwrap(),
        ]);
        assert_eq!(
            from_cert, from_key,
            "{what}: {id}: key does not match certificate"
        );
    }
}

/// What the cut run's journal says is durable, on the disk as the cut left it (before any
/// replay): each identity a `ready` names has each new file, in place or in its temporary file;
/// each one a `commit` closes has them in place. Returns how many identities break a promise.
fn journal_kept(root: &Path, runs_before: &[String], what: &str) -> usize {
    use sha2::Digest;
    let digest = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| hex::encode(sha2::Sha256::digest(b)))
    };
    let Ok(runs) = std::fs::read_dir(root.join(".rekey/runs")) else {
        return 0;
    };
    let mut broken = 0;
    for run in runs {
        let run = run.unwrap();
        let id = run.file_name().to_string_lossy().into_owned();
        if runs_before.contains(&id) {
            continue;
        }
        let text = std::fs::read(run.path().join("journal.jsonl")).unwrap_or_default();
        // The last line may be cut short (never synced whole): the parse stops there.
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&text)
            .lines()
            .map_while(|l| serde_json::from_str(l).ok())
            .collect();
        let op = |r: &serde_json::Value, o: &str| r["op"] == o;
        for prepare in records.iter().filter(|r| op(r, "prepare")) {
            let batch = &prepare["batch"];
            let ready: Vec<&str> = records
                .iter()
                .filter(|r| op(r, "ready") && r["batch"] == *batch)
                .flat_map(|r| {
                    r["identities"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap())
                })
                .collect();
            let committed = records
                .iter()
                .any(|r| op(r, "commit") && r["batch"] == *batch);
            for change in prepare["identities"].as_array().unwrap() {
                let name = format!(
                    "{}/{}",
                    change["node"].as_str().unwrap(),
                    change["service"].as_str().unwrap()
                );
                if !ready.contains(&name.as_str()) {
                    continue;
                }
                let dir = root.join("nodes").join(&name);
                for f in change["files"].as_array().unwrap() {
                    let (file, new) = (f["name"].as_str().unwrap(), f["new_sha256"].as_str());
                    let live = digest(&dir.join(file));
                    let temp = digest(&dir.join(format!(".rekey-new.{id}.{file}")));
                    let kept = live.as_deref() == new || (!committed && temp.as_deref() == new);
                    if !kept {
                        eprintln!(
                            "{what}: the journal says {name}/{file} is durable (batch {batch}, committed {committed}), the disk lost it"
                        );
                        broken += 1;
                        break;
                    }
                }
            }
        }
    }
    broken
}

/// Every identity in `ids` had a deploy hook run (a line in the hooks' log).
fn hooks_ran(lab: &Lab, ids: &[String], what: &str) {
    let log = std::fs::read_to_string(lab.hooks.join("deploy.log")).unwrap_or_default();
    let ran: std::collections::BTreeSet<&str> = log.lines().collect();
    for id in ids {
        let name = id.trim_start_matches("nodes/");
        assert!(
            ran.contains(name),
            "{what}: the deploy hook of {id} never ran"
        );
    }
    let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
}

/// One command swept with cuts: from the state in `base` each time, cut, remount, `status`,
/// `next`, check.
#[expect(clippy::too_many_arguments, reason = "one sweep's whole description")]
fn sweep(
    lab: &Lab,
    base: &Path,
    name: &str,
    args: &[String],
    next: &[String],
    expect: &Expect<'_>,
    hooked: &[String],
    (spread, most): (usize, usize),
    env: &[(&str, String)],
    tally: &mut Tally,
) {
    copy(base, lab.backing.path());
    let before = snapshot(&lab.root());
    let whole = on_crashfs(lab, args, None, Survives::Everything, env);
    assert!(
        matches!(whole.code, Some(0 | 3 | 4)),
        "{name}: {}",
        whole.stderr
    );
    let mut points = cut_points(&whole.trace, spread);
    if points.len() > most {
        // Evenly over the run, the first and the last kept.
        let n = points.len();
        points = (0..most)
            .map(|k| points[k * (n - 1) / (most - 1)])
            .collect();
    }
    eprintln!(
        "{name}: {} requests, {} cut points",
        whole.trace.len(),
        points.len()
    );
    for (n, at) in points.iter().enumerate() {
        let t = Instant::now();
        copy(base, lab.backing.path());
        let survives = if n % 3 == 2 {
            Survives::Some(0x5eed + *at)
        } else {
            Survives::Synced
        };
        let what = format!(
            "{name} cut at request {at} of {} ({}, {:?})",
            whole.trace.len(),
            whole.trace[*at as usize - 1],
            survives
        );
        let runs_before: Vec<String> = std::fs::read_dir(lab.root().join(".rekey/runs"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let ran = on_crashfs(lab, args, Some(*at), survives, env);
        assert!(ran.cut, "{what}: the power was never cut");
        tally.lost += journal_kept(&lab.root(), &runs_before, &what);
        match survives {
            Survives::Some(_) => tally.reordering += 1,
            _ => tally.strict += 1,
        }
        let status = on_crashfs(lab, &["status".into()], None, Survives::Everything, env);
        assert!(status.code.is_some(), "{what}: status: {}", status.stderr);
        let after = on_crashfs(lab, next, None, Survives::Everything, env);
        assert!(
            matches!(after.code, Some(0 | 3 | 4)),
            "{what}: {}",
            after.stderr
        );
        check(lab, &before, expect, &what, tally);
        hooks_ran(lab, hooked, &what);
        eprintln!("{what}: whole ({:.1?})", t.elapsed());
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args
        .windows(2)
        .any(|w| w[0] == "--skip" && w[1] == "power_loss")
    {
        println!("power loss: skipped (--skip power_loss)");
        return;
    }
    if !is_root() {
        // The crash filesystem is a FUSE mount, which needs root (CI runs as root).
        println!("power loss: SKIPPED: not root, the crash filesystem cannot be mounted");
        return;
    }
    let started = Instant::now();
    controls();
    durability_paths();
    power_cuts_leave_every_identity_whole();
    println!("power loss: done in {:.0?}", started.elapsed());
}

fn power_cuts_leave_every_identity_whole() {
    let lab = lab();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let hooks = |cmd: &[&str]| {
        let mut v = s(cmd);
        v.extend([
            "--deploy-hook".into(),
            lab.deploy_hook(),
            "--post-hook".into(),
            lab.post_hook(),
        ]);
        v
    };
    let pristine = tempfile::tempdir().unwrap();
    let base = pristine.path().join("base");
    copy(lab.backing.path(), &base);
    let due: Vec<String> = lab
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 9)
        .map(|(_, id)| id.clone())
        .collect();
    let expired: Vec<String> = lab
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 9)
        .map(|(_, id)| id.clone())
        .collect();
    let mut tally = Tally::default();
    let rotate = hooks(&["rotate"]);

    // apply of a reviewed plan: the same protocol, from a plan file.
    copy(&base, lab.backing.path());
    let plan = lab.hooks.join("plan.toml").display().to_string();
    let planned = on_crashfs(
        &lab,
        &s(&["plan", "-o", &plan]),
        None,
        Survives::Everything,
        &[],
    );
    assert!(
        matches!(planned.code, Some(0 | 3 | 4)),
        "{}",
        planned.stderr
    );
    let apply = hooks(&["apply", &plan]);
    sweep(
        &lab,
        &base,
        "apply",
        &apply,
        &apply,
        &Expect::New { targets: &due },
        &due,
        (1, 4),
        &[],
        &mut tally,
    );

    // recover --yes: the audit log's lines too.
    let recover = hooks(&["recover", "--yes", "--all", "--reason", "power loss test"]);
    sweep(
        &lab,
        &base,
        "recover",
        &recover,
        &recover,
        &Expect::New { targets: &expired },
        &expired,
        (2, 6),
        &[],
        &mut tally,
    );

    // rollback of a committed rotate: byte-exact after the cut and the rollback again.
    copy(&base, lab.backing.path());
    let ran = on_crashfs(&lab, &rotate, None, Survives::Everything, &[]);
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
    let run_id = newest_run(&lab.root());
    let rotated = pristine.path().join("rotated");
    copy(lab.backing.path(), &rotated);
    let rollback = hooks(&["rollback", &run_id]);
    let original = snapshot(&base.join("fleet"));
    sweep(
        &lab,
        &rotated,
        "rollback",
        &rollback,
        &rollback,
        &Expect::Exactly(&original),
        &due,
        (2, 6),
        &[],
        &mut tally,
    );

    // prune of the rolled-back rotate's backups: the fleet untouched.
    copy(&rotated, lab.backing.path());
    let ran = on_crashfs(&lab, &rollback, None, Survives::Everything, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let rolled = pristine.path().join("rolled");
    copy(lab.backing.path(), &rolled);
    let prune = s(&["prune", "--keep", "1"]);
    sweep(
        &lab,
        &rolled,
        "prune",
        &prune,
        &prune,
        &Expect::Exactly(&original),
        &[],
        (1, 4),
        &[],
        &mut tally,
    );

    // rotate, with hooks: the next writing command is the same rotate (replay, then the rest).
    sweep(
        &lab,
        &base,
        "rotate",
        &rotate,
        &rotate,
        &Expect::New { targets: &due },
        &due,
        (4, 14),
        &[],
        &mut tally,
    );

    // rotate on the syncfs path, each syncfs told to the crash filesystem.
    let note = lab
        .mount
        .path()
        .join(crashfs::CONTROL)
        .display()
        .to_string();
    sweep(
        &lab,
        &base,
        "rotate (syncfs)",
        &rotate,
        &rotate,
        &Expect::New { targets: &due },
        &due,
        (1, 5),
        &[("REKEY_SYNCFS_NOTE", note)],
        &mut tally,
    );

    println!(
        "power loss: {} cuts ({} strict, {} reordering), {} torn, {} lost",
        tally.strict + tally.reordering,
        tally.strict,
        tally.reordering,
        tally.torn,
        tally.lost
    );
    assert!(tally.strict + tally.reordering >= 30, "at least 30 cuts");
    assert_eq!((tally.torn, tally.lost), (0, 0));
}

fn newest_run(root: &Path) -> String {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.pop().unwrap()
}

/// A writer that skips a sync loses its change at a cut, and keeps it with the sync: the
/// filesystem bites where rekey must not be caught.
fn controls() {
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
/// directory, a local filesystem one syncfs per phase; and rekey's runs on FUSE never rely on
/// a syncfs, while with the test hook each syncfs reaches the crash filesystem.
fn durability_paths() {
    use rekey::fsio::Durability;
    let local = tempfile::tempdir().unwrap();
    assert_eq!(Durability::of(local.path()).unwrap(), Durability::Syncfs);
    let lab = lab();
    let m = crashfs::mount(lab.backing.path(), lab.mount.path(), None).unwrap();
    assert_eq!(
        Durability::of(lab.mount.path()).unwrap(),
        Durability::EachFile
    );
    m.finish(Survives::Everything).unwrap();
    let base = tempfile::tempdir().unwrap();
    copy(lab.backing.path(), &base.path().join("b"));
    let rotate: Vec<String> = vec!["rotate".into()];
    let fallback = on_crashfs(&lab, &rotate, None, Survives::Everything, &[]);
    assert_eq!(fallback.code, Some(4), "{}", fallback.stderr);
    assert!(
        fallback
            .trace
            .iter()
            .any(|op| op.starts_with("fsyncdir svc-")),
        "the fallback syncs identity directories"
    );
    copy(&base.path().join("b"), lab.backing.path());
    let note = lab
        .mount
        .path()
        .join(crashfs::CONTROL)
        .display()
        .to_string();
    let hooked = on_crashfs(
        &lab,
        &rotate,
        None,
        Survives::Everything,
        &[("REKEY_SYNCFS_NOTE", note)],
    );
    assert_eq!(hooked.code, Some(4), "{}", hooked.stderr);
    assert!(
        hooked.syncfs >= 2,
        "every syncfs reaches the crash filesystem through the hook"
    );
    assert!(
        !hooked
            .trace
            .iter()
            .any(|op| op.starts_with("fsyncdir svc-")),
        "the syncfs path syncs no directory of its own"
    );
    println!(
        "paths: FUSE gets an fsync of every file and directory ({} requests); the syncfs path, told to the crash filesystem, {} syncfs",
        fallback.trace.len(),
        hooked.syncfs
    );
}
