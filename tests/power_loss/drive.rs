//! The cut driver: one run of rekey on the crash filesystem (cut at a request, or not), the
//! requests worth cutting at, and the sweep of one command over them.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::checks::{Expect, check, exited_whole, hooks_ran, journal_kept};
use crate::common::*;
use crate::lab::Lab;
use crashfs::Survives;

/// Where the power is cut in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// At the run's Nth mutating request (the first is 1).
    At(u64),
    /// Once the process has exited successfully: all it left unsynced is lost.
    Exited,
}

/// One run of rekey on the crash filesystem, the power cut where `cut` says if given.
pub struct Ran {
    pub code: Option<i32>,
    pub stderr: String,
    pub trace: Vec<String>,
    pub cut: bool,
    pub syncfs: u64,
}

pub fn on_crashfs(
    lab: &Lab,
    args: &[String],
    cut: Option<Cut>,
    survives: Survives,
    env: &[(&str, String)],
) -> Ran {
    let t = Instant::now();
    let at = match cut {
        Some(Cut::At(n)) => Some(n),
        _ => None,
    };
    let m = crashfs::mount(lab.backing.path(), lab.mount.path(), at)
        .expect("the crash filesystem mounts (root, /dev/fuse)");
    let root = lab.mount.path().join("fleet");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(args)
        .arg("--root")
        .arg(&root)
        .args(
            if matches!(args[0].as_str(), "rollback" | "prune" | "hooks") {
                &[][..] // they take no --as-of
            } else {
                &["--as-of", AS_OF][..]
            },
        )
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(300);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            if cut == Some(Cut::Exited) && matches!(status.code(), Some(0 | 3 | 4)) {
                m.cut_now();
            }
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

/// The requests to cut at in a run whose requests were `trace`: each journal append's sync,
/// the report's and the hook marker's, the audit log's, and `spread` points over the rest. (Not
/// an append's write as well: a strict cut there leaves what a strict cut at its sync does,
/// and a reordering cut at the sync may keep the unsynced append, whole or in part.)
pub fn cut_points(trace: &[String], spread: usize) -> Vec<u64> {
    let mut points: Vec<u64> = Vec::new();
    for (i, op) in trace.iter().enumerate() {
        if op == "write journal.jsonl"
            && trace.get(i + 1).is_some_and(|o| o == "fsync journal.jsonl")
        {
            continue;
        }
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
pub struct Tally {
    pub strict: usize,
    pub reordering: usize,
    pub torn: usize,
    pub lost: usize,
}

/// Whether the sweep `name` cuts: all of them, or those `REKEY_POWER_ONLY` names (a comma-separated
/// list of sweep names, e.g. `recover,prune`: to run one again by hand).
pub fn chosen(name: &str) -> bool {
    match std::env::var("REKEY_POWER_ONLY") {
        Ok(only) => only.split(',').any(|o| o == name),
        Err(_) => true,
    }
}

/// `most` of `points`, evenly over them, the first and the last kept.
pub fn evenly(points: Vec<u64>, most: usize) -> Vec<u64> {
    let n = points.len();
    if n > most {
        (0..most)
            .map(|k| points[k * (n - 1) / (most - 1)])
            .collect()
    } else {
        points
    }
}

/// The runs of the fleet at `root` (their ids).
pub fn runs_of(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join(".rekey/runs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Where a sweep cuts, of the points [`cut_points`] finds.
#[derive(Clone, Copy)]
pub enum Cuts {
    /// `most` of them evenly over the run (`spread` more points spread over it first), and a
    /// strict cut once the run has exited.
    Over { spread: usize, most: usize },
    /// The first `n` (a replay: its steps come first).
    First(usize),
}

/// One command swept with cuts: from the state in `base` each time, cut, remount, `status`,
/// `next`, check.
#[expect(clippy::too_many_arguments, reason = "one sweep's whole description")]
pub fn sweep(
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
            let mut points: Vec<Cut> = evenly(cut_points(&whole.trace, spread), most)
                .into_iter()
                .map(Cut::At)
                .collect();
            points.push(Cut::Exited);
            points
        }
        Cuts::First(most) => cut_points(&whole.trace, 0)
            .into_iter()
            .take(most)
            .map(Cut::At)
            .collect(),
    };
    eprintln!(
        "{name}: {} requests, {} cut points",
        whole.trace.len(),
        points.len()
    );
    let mut readers = Vec::new();
    for (n, cut) in points.iter().enumerate() {
        let t = Instant::now();
        copy(base, lab.backing.path());
        let (survives, what) = match *cut {
            Cut::At(at) => {
                let survives = if n % 3 == 2 {
                    Survives::Some(0x5eed + at)
                } else {
                    Survives::Synced
                };
                let what = format!(
                    "{name} cut at request {at} of {} ({}, {survives:?})",
                    whole.trace.len(),
                    whole.trace[at as usize - 1],
                );
                (survives, what)
            }
            Cut::Exited => (Survives::Synced, format!("{name} cut once it exited")),
        };
        let runs_before = runs_of(&lab.root());
        let ran = on_crashfs(lab, args, Some(*cut), survives, env);
        assert!(ran.cut, "{what}: the power was never cut");
        tally.lost += journal_kept(&lab.root(), &runs_before, &what);
        if *cut == Cut::Exited {
            exited_whole(&lab.root(), &runs_before, &what);
        }
        match survives {
            Survives::Some(_) => tally.reordering += 1,
            _ => tally.strict += 1,
        }
        // A reader of the disk as the cut left it (no writes: it reads a copy of the backing
        // directory, the same bytes the crash filesystem would serve), while the next writing
        // command runs on the filesystem mounted again, the fleet is checked and the next cuts
        // are made. A reader that finds a dead run's temporary files waits for it a while
        // (scan::PATIENCE): that wait overlaps them; the readers are heard at the sweep's end.
        let disk = tempfile::tempdir().unwrap();
        copy(&lab.root(), &disk.path().join("fleet"));
        let reader = std::thread::spawn(move || {
            let read = Instant::now();
            let said = run(&disk.path().join("fleet"), &["status"]);
            (said, read.elapsed())
        });
        let after = on_crashfs(lab, next, None, Survives::Everything, env);
        assert!(
            matches!(after.code, Some(0 | 3 | 4)),
            "{what}: {}",
            after.stderr
        );
        let checking = Instant::now();
        check(lab, &before, expect, &what, tally);
        hooks_ran(lab, hooked, &what);
        eprintln!("  check: {:.1?}", checking.elapsed());
        eprintln!("{what}: whole ({:.1?})", t.elapsed());
        readers.push((reader, what));
    }
    for (reader, what) in readers {
        let ((code, _, stderr), took) = reader.join().unwrap();
        assert!(matches!(code, 0 | 3 | 4), "{what}: status: {stderr}");
        eprintln!("{what}: status read the cut disk in {took:.1?}");
    }
    // Stop at the first command that tears or loses anything (the lines above say where).
    assert_eq!((tally.torn, tally.lost), (0, 0), "{name}: torn, lost");
    whole
}
