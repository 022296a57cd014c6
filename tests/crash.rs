//! The crash suite: kill -9 a real `rekey rotate` (and `rollback`, and `recover`) at instants
//! spread over its run, then let the next writer replay the journal, and check that every
//! identity of a 1,000-identity fleet is wholly old or wholly new, that no temporary file is
//! left, that every backup of a replaced file is intact, and that a rerun completes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("rekey"))
}

fn spawn(args: &[&str], root: &Path) -> std::process::Child {
    bin()
        .args(args)
        .arg("--root")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts `rekey args` and kills it with SIGKILL after `delay` (if it is still running).
fn kill_after(args: &[&str], root: &Path, delay: Duration) -> bool {
    let mut child = spawn(args, root);
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    killed
}

/// Starts `rekey args` and kills it with SIGKILL `delay` after its journal first shows a batch
/// marked ready (if it is still running then): a kill on the far side of the journal's point of
/// no return, whatever the machine's speed.
fn kill_after_ready(args: &[&str], root: &Path, delay: Duration) -> bool {
    let mut child = spawn(args, root);
    let runs = root.join(".rekey/runs");
    let mark: &[u8] = b"\"op\":\"ready\"";
    let ready = || {
        std::fs::read_dir(&runs).ok().is_some_and(|entries| {
            entries.filter_map(Result::ok).any(|run| {
                std::fs::read(run.path().join("journal.jsonl"))
                    .is_ok_and(|j| j.windows(mark.len()).any(|w| w == mark))
            })
        })
    };
    while matches!(child.try_wait(), Ok(None)) && !ready() {
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn timed(args: &[&str], root: &Path) -> Duration {
    let start = Instant::now();
    let out = bin().args(args).arg("--root").arg(root).output().unwrap();
    assert!(out.status.code().is_some(), "{args:?} was not killed");
    start.elapsed()
}

/// A writer that finds nothing else to do in `root`: it replays the journal first.
const REPLAY: [&str; 7] = [
    "recover", "--all", "--reason", "replay", "--yes", "--as-of", AS_OF,
];
/// The same, for a fleet where every identity needs recover (rotate finds nothing to rotate).
const REPLAY_RECOVERING: [&str; 3] = ["rotate", "--as-of", AS_OF];

fn replay(root: &Path, writer: &[&str]) {
    let out = bin().args(writer).arg("--root").arg(root).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3 | 4)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reruns `args` after a kill and replay: it exits 0 and every identity ends new.
fn rerun_completes(
    root: &Path,
    args: &[&str],
    ids: &[String],
    original: &BTreeMap<String, (Vec<u8>, u32)>,
    what: &str,
) {
    let out = bin().args(args).arg("--root").arg(root).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        whole(ids, original, &snapshot(root), what),
        ids.len(),
        "{what}: the rerun completes"
    );
}

#[test]
fn rotate_killed_at_fifty_instants_leaves_every_identity_whole() {
    let work = tempfile::tempdir().unwrap();
    let template = work.path().join("template");
    let ids = fleet(&template, 1000, 30);
    let original = snapshot(&template);
    let root = work.path().join("fleet");
    copy(&template, &root);
    let mut span = timed(&["rotate", "--as-of", AS_OF], &root);
    let (mut killed, mut attempts) = (0usize, 0u32);
    let mut seen_new = std::collections::BTreeSet::new();
    // Fifty kills that land inside a run, at instants spread over it; a run that ended before
    // its kill shortens the span the next instants are drawn from (machines are noisy).
    while killed < 50 {
        assert!(
            attempts < 150,
            "only {killed} kills landed in {attempts} attempts"
        );
        let what = format!("attempt {attempts}");
        copy(&template, &root);
        // Every fifth kill waits for the journal's ready mark, so kills land on both sides of
        // it however the run's time divides between staging and committing on this machine.
        let args = ["rotate", "--as-of", AS_OF];
        let landed = if attempts % 5 == 4 {
            kill_after_ready(&args, &root, Duration::from_millis(u64::from(attempts % 3)))
        } else {
            let delay = span.mul_f64(f64::from(attempts % 25) / 25.0) + Duration::from_millis(5);
            let landed = kill_after(&args, &root, delay);
            if !landed {
                span = span.mul_f64(0.8);
            }
            landed
        };
        killed += usize::from(landed);
        attempts += 1;
        replay(&root, &REPLAY);
        assert!(
            temp_files(&root).is_empty(),
            "{what}: {:?}",
            temp_files(&root)
        );
        let new = whole(&ids, &original, &snapshot(&root), &what);
        seen_new.insert(new);
        backups_intact(&root, &what);
        rerun_completes(&root, &["rotate", "--as-of", AS_OF], &ids, &original, &what);
        assert!(temp_files(&root).is_empty());
    }
    eprintln!("identities found new after each kill: {seen_new:?}");
    // 1,000 identities are one journal batch: a kill before it is marked ready leaves all of
    // them old, after it all new. Both must have been seen.
    assert!(
        seen_new.contains(&0) && seen_new.contains(&ids.len()),
        "kills landed on one side of the journal only: {seen_new:?}"
    );
}

#[test]
fn rollback_and_recover_killed_midway_leave_every_identity_whole() {
    let work = tempfile::tempdir().unwrap();
    // Rollback: rotate whole, then kill the rollback at several instants.
    let template = work.path().join("template");
    let ids = fleet(&template, 1000, 30);
    let original = snapshot(&template);
    let rotated = work.path().join("rotated");
    copy(&template, &rotated);
    assert_eq!(run(&rotated, &["rotate"]).0, 0);
    let rotated_files = snapshot(&rotated);
    let run_id = std::fs::read_dir(rotated.join(".rekey/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let root = work.path().join("fleet");
    copy(&rotated, &root);
    let full = timed(&["rollback", &run_id], &root);
    for k in 0..10u32 {
        let what = format!("rollback kill {k}");
        copy(&rotated, &root);
        kill_after(
            &["rollback", &run_id],
            &root,
            full.mul_f64(f64::from(k) / 9.0) + Duration::from_millis(5),
        );
        replay(&root, &REPLAY);
        assert!(temp_files(&root).is_empty(), "{what}");
        whole(&ids, &rotated_files, &snapshot(&root), &what);
        backups_intact(&root, &what);
        let out = bin()
            .args(["rollback", &run_id, "--root"])
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            snapshot(&root),
            original,
            "{what}: the rerun restores the fleet"
        );
    }

    // Recover: every token expired; kill `recover --all --yes` at several instants.
    let template = work.path().join("expired");
    let ids = fleet(&template, 1000, 95);
    let original = snapshot(&template);
    let recover = [
        "recover",
        "--all",
        "--reason",
        "crash test",
        "--yes",
        "--as-of",
        AS_OF,
    ];
    copy(&template, &root);
    let full = timed(&recover, &root);
    for k in 0..10u32 {
        let what = format!("recover kill {k}");
        copy(&template, &root);
        kill_after(
            &recover,
            &root,
            full.mul_f64(f64::from(k) / 9.0) + Duration::from_millis(5),
        );
        replay(&root, &REPLAY_RECOVERING);
        assert!(temp_files(&root).is_empty(), "{what}");
        whole(&ids, &original, &snapshot(&root), &what);
        backups_intact(&root, &what);
        rerun_completes(&root, &recover, &ids, &original, &what);
        let audit = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap();
        assert!(
            audit
                .lines()
                .filter(|l| l.contains("\"requested\""))
                .count()
                >= ids.len(),
            "{what}: requests audited"
        );
    }
}
