//! Power loss: rekey on a filesystem that forgets what was not made durable (`crates/crashfs`,
//! FUSE). Each command is run once whole to learn its requests, then again from the same state
//! with the power cut at chosen requests: the journal's appends and syncs, the report, the hook
//! marker, the audit log, and points spread over the staging and the renames; and the replay
//! is cut in turn (a rotate cut after staging, and after its ready mark, then the next rotate
//! cut at its first steps). After each cut the filesystem keeps only what was synced (strict)
//! or that and a seeded random subset of the rest (reordering); `status` reads the disk as the
//! cut left it, the next writing command runs on the filesystem mounted again, and the fleet is
//! checked from outside (rekey's verifier; openssl on every identity, in one pass): every
//! identity wholly old or wholly new, no empty or partial file, none lost, every run's report
//! whole and its backups the old bytes, every hook run, and `rollback` byte-exact. The fleet is
//! built once and copied for each cut. Needs root and /dev/fuse.

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
                // RSA keys are slow to make, and every rotating run makes them again: four.
                _ if i % 60 == 3 => KeyAlg::Rsa { bits: 2048 },
                _ => KeyAlg::P256,
            };
            if i % 10 == 9 {
                s.token = Some(issued(120)); // expired: the identity needs recover
            }
            s
        })
        .collect();
    build(&root, &ca_spec(KeyAlg::P256), &specs);
    // An eighth of the identities belong to their service's user: their backups are copies
    // (synced), not links (a hard link would let the owner change the backup).
    for s in specs.iter().skip(5).step_by(8) {
        for f in FILES {
            let file = root.join("nodes").join(&s.node).join(&s.service).join(f);
            std::os::unix::fs::chown(file, Some(1000), Some(1000)).unwrap();
        }
    }
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
    // rekey's verifier (what the crash suite reads) reads the fleet while the rest is checked.
    let verifier = {
        let root = root.clone();
        std::thread::spawn(move || states(&root))
    };
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
            if let Ok(report) = std::fs::read(run.path().join("report.json")) {
                assert_report_valid(&serde_json::from_slice(&report).unwrap(), what);
            }
            std::fs::rename(run.path(), hidden.path().join(&id)).unwrap();
        }
    }
    backups_intact(&root, what);
    audit_whole(&root, what);
    for run in std::fs::read_dir(hidden.path()).unwrap() {
        let run = run.unwrap();
        std::fs::rename(run.path(), runs.join(run.file_name())).unwrap();
    }
    // Each run has its report (`backups_intact` checked each against the schema).
    let without: Vec<_> = std::fs::read_dir(root.join(".rekey/runs"))
        .into_iter()
        .flatten()
        .map(|run| run.unwrap().path())
        .filter(|run| !run.join("report.json").is_file())
        .collect();
    assert!(
        without.is_empty(),
        "{what}: runs without their report: {without:?}"
    );
    // rekey's verifier (what the crash suite reads): no identity is a problem.
    let problems: Vec<_> = verifier
        .join()
        .unwrap()
        .into_iter()
        .filter(|(_, (s, _))| s == "problem")
        .collect();
    assert!(problems.is_empty(), "{what}: {problems:?}");
    openssl_fleet(&root, &lab.ids, what);
}

/// openssl, every identity in two processes: each certificate verifies against the CA at the
/// pinned instant (one `openssl verify` of them all), and each private key's public half is its
/// certificate's (one `openssl storeutl` of every key and certificate in turn).
fn openssl_fleet(root: &Path, ids: &[String], what: &str) {
    let certs: Vec<PathBuf> = ids
        .iter()
        .map(|id| root.join(id).join("cert.pem"))
        .collect();
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &as_of().timestamp().to_string(),
            "-CAfile",
        ])
        .arg(root.join("ca/ca.crt"))
        .args(&certs)
        .output()
        .expect("openssl is installed (see .ci/run)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.lines().filter(|l| l.ends_with(": OK")).count() == ids.len(),
        "{what}: openssl verify: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pems = Vec::new();
    for id in ids {
        for file in ["key.pem", "cert.pem"] {
            pems.extend(std::fs::read(root.join(id).join(file)).unwrap());
            pems.push(b'\n');
        }
    }
    let all = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(all.path(), &pems).unwrap();
    let text = openssl(&["storeutl", "-noout", "-text", all.path().to_str().unwrap()]);
    let publics = public_halves(&text);
    assert_eq!(
        publics.len(),
        2 * ids.len(),
        "{what}: openssl storeutl read {} objects",
        publics.len()
    );
    for (id, pair) in ids.iter().zip(publics.chunks(2)) {
        let [(key_kind, key), (cert_kind, cert)] = pair else {
            unreachable!()
        };
        assert_eq!(
            (key_kind.as_str(), cert_kind.as_str()),
            ("Pkey", "Certificate"),
            "{what}: {id}"
        );
        assert!(
            !key.is_empty() && key == cert,
            "{what}: {id}: key does not match certificate"
        );
    }
}

/// Each object `openssl storeutl -text` printed: its kind (`Pkey`, `Certificate`) and the hex
/// of its public key (the first `pub:` or `modulus:` block in it).
fn public_halves(text: &str) -> Vec<(String, String)> {
    let mut objects: Vec<(String, String)> = Vec::new();
    let mut reading = false;
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((n, kind)) = line.split_once(": ")
            && !line.starts_with(' ')
            && n.chars().all(|c| c.is_ascii_digit())
        {
            objects.push((kind.trim().to_string(), String::new()));
            (reading, done) = (false, false);
            continue;
        }
        let Some((_, public)) = objects.last_mut() else {
            continue;
        };
        if reading
            && !trimmed.is_empty()
            && trimmed.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
        {
            public.push_str(trimmed);
        } else if reading {
            (reading, done) = (false, true);
        } else if !done && matches!(trimmed.to_ascii_lowercase().as_str(), "pub:" | "modulus:") {
            reading = true;
        }
    }
    objects
}

/// The audit log keeps what `recover` changed: every identity a recover run's report has done
/// has its `requested` line of that run, and its `recovered` line (rekey settles the audit log
/// before it ends the run's journal, so a run cut off before its end is replayed, and the
/// replay writes what is missing).
fn audit_whole(root: &Path, what: &str) {
    let log = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap_or_default();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: audit line {l}: {e}")))
        .collect();
    for report in reports_of(root)
        .iter()
        .filter(|r| r["command"] == "recover")
    {
        for i in report["identities"].as_array().unwrap() {
            if i["outcome"] != "done" {
                continue;
            }
            let has = |event: &str| {
                lines.iter().any(|l| {
                    l["event"] == event
                        && l["run_id"] == report["run_id"]
                        && l["node"] == i["node"]
                        && l["service"] == i["service"]
                })
            };
            for event in ["requested", "recovered"] {
                assert!(
                    has(event),
                    "{what}: the audit log lost the {event} line of {}/{} (run {})",
                    i["node"],
                    i["service"],
                    report["run_id"]
                );
            }
        }
    }
}

/// Every run's report, as JSON (the schema is checked by `backups_intact`).
fn reports_of(root: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(root.join(".rekey/runs"))
        .into_iter()
        .flatten()
        .filter_map(|run| std::fs::read(run.unwrap().path().join("report.json")).ok())
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .collect()
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

/// Whether the sweep `name` cuts: all of them, or those `REKEY_POWER_ONLY` names (a comma-separated
/// list of sweep names, e.g. `recover,prune`: to run one again by hand).
fn chosen(name: &str) -> bool {
    match std::env::var("REKEY_POWER_ONLY") {
        Ok(only) => only.split(',').any(|o| o == name),
        Err(_) => true,
    }
}

/// Where a sweep cuts, of the points [`cut_points`] finds.
#[derive(Clone, Copy)]
enum Cuts {
    /// `most` of them evenly over the run (`spread` more points spread over it first).
    Over { spread: usize, most: usize },
    /// The first `n` (a replay: its steps come first).
    First(usize),
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
    cuts: Cuts,
    env: &[(&str, String)],
    tally: &mut Tally,
) -> Ran {
    copy(base, lab.backing.path());
    let before = snapshot(&lab.root());
    let whole = on_crashfs(lab, args, None, Survives::Everything, env);
    assert!(
        matches!(whole.code, Some(0 | 3 | 4)),
        "{name}: {}",
        whole.stderr
    );
    let points = match cuts {
        _ if !chosen(name) => Vec::new(),
        Cuts::Over { spread, most } => {
            let points = cut_points(&whole.trace, spread);
            // Evenly over the run, the first and the last kept.
            let n = points.len();
            if n > most {
                (0..most)
                    .map(|k| points[k * (n - 1) / (most - 1)])
                    .collect()
            } else {
                points
            }
        }
        Cuts::First(most) => cut_points(&whole.trace, 0).into_iter().take(most).collect(),
    };
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
        // A reader of the disk as the cut left it (no writes: it reads a copy of the backing
        // directory, the same bytes the crash filesystem would serve), while the next writing
        // command runs on the filesystem mounted again. A reader that finds a dead run's
        // temporary files waits for it a while (scan::PATIENCE): that wait overlaps the run.
        let cut = tempfile::tempdir().unwrap();
        copy(&lab.root(), &cut.path().join("fleet"));
        let reader = std::thread::spawn(move || {
            let read = Instant::now();
            let said = run(&cut.path().join("fleet"), &["status"]);
            (said, read.elapsed())
        });
        let after = on_crashfs(lab, next, None, Survives::Everything, env);
        let ((code, _, stderr), took) = reader.join().unwrap();
        assert!(matches!(code, 0 | 3 | 4), "{what}: status: {stderr}");
        eprintln!("  status: {took:.1?}");
        assert!(
            matches!(after.code, Some(0 | 3 | 4)),
            "{what}: {}",
            after.stderr
        );
        check(lab, &before, expect, &what, tally);
        hooks_ran(lab, hooked, &what);
        eprintln!("{what}: whole ({:.1?})", t.elapsed());
    }
    // Stop at the first command that tears or loses anything (the lines above say where).
    assert_eq!((tally.torn, tally.lost), (0, 0), "{name}: torn, lost");
    whole
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
    let new = Expect::New { targets: &due };

    // rotate, with hooks: the next writing command is the same rotate (replay, then the rest).
    // Its whole run shows the path FUSE gets: an fsync of every directory it changed.
    let fallback = sweep(
        &lab,
        &base,
        "rotate",
        &rotate,
        &rotate,
        &new,
        &due,
        Cuts::Over { spread: 4, most: 8 },
        &[],
        &mut tally,
    );
    assert!(
        fallback
            .trace
            .iter()
            .any(|op| op.starts_with("fsyncdir svc-")),
        "the fallback syncs identity directories"
    );

    // rotate on the syncfs path, each syncfs told to the crash filesystem: no directory synced
    // of its own, every phase one syncfs.
    let note = lab
        .mount
        .path()
        .join(crashfs::CONTROL)
        .display()
        .to_string();
    let hooked = sweep(
        &lab,
        &base,
        "rotate (syncfs)",
        &rotate,
        &rotate,
        &new,
        &due,
        Cuts::Over { spread: 1, most: 3 },
        &[("REKEY_SYNCFS_NOTE", note)],
        &mut tally,
    );
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

    // The replay itself cut: from a rotate cut once its batch was staged (the replay undoes
    // it), and once it was marked ready (the replay finishes it), the next rotate is cut in
    // turn, then run again.
    // The staging's sync begins with the first temporary file's; the next journal append is
    // the batch's hooks (then `ready`), and the first rename after it is the first file put in
    // place.
    let trace = &fallback.trace;
    let synced = trace
        .iter()
        .position(|op| op.starts_with("fsync .rekey-new"))
        .expect("the rotate staged files");
    let after = |what: &str| {
        synced
            + trace[synced..]
                .iter()
                .position(|op| op.starts_with(what))
                .expect("the rotate went on after staging")
            + 1
    };
    for (step, at) in [
        ("staged", after("write journal.jsonl")),
        ("ready", after("rename ")),
    ] {
        let at = at as u64;
        copy(&base, lab.backing.path());
        let ran = on_crashfs(&lab, &rotate, Some(at), Survives::Synced, &[]);
        assert!(ran.cut, "the rotate to replay was cut");
        let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
        let cut = pristine.path().join(step);
        copy(lab.backing.path(), &cut);
        let name = format!("replay of a batch {step}");
        sweep(
            &lab,
            &cut,
            &name,
            &rotate,
            &rotate,
            &new,
            &due,
            Cuts::First(5),
            &[],
            &mut tally,
        );
    }

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
        &new,
        &due,
        Cuts::Over { spread: 1, most: 3 },
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
        Cuts::Over { spread: 3, most: 4 },
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
        Cuts::Over { spread: 2, most: 4 },
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
        Cuts::Over { spread: 1, most: 3 },
        &[],
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
    if std::env::var_os("REKEY_POWER_ONLY").is_none() {
        assert!(tally.strict + tally.reordering >= 30, "at least 30 cuts");
    }
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
/// directory, a local filesystem one syncfs per phase. (The rotate sweeps show rekey's runs
/// taking each: see `power_cuts_leave_every_identity_whole`.)
fn durability_paths() {
    use rekey::fsio::Durability;
    let local = tempfile::tempdir().unwrap();
    assert_eq!(Durability::of(local.path()).unwrap(), Durability::Syncfs);
    let (backing, mount) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = crashfs::mount(backing.path(), mount.path(), None).unwrap();
    assert_eq!(Durability::of(mount.path()).unwrap(), Durability::EachFile);
    m.finish(Survives::Everything).unwrap();
}
