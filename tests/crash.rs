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

/// The identities one journal batch commits (`write::batches::BATCH`).
const BATCH: usize = 512;

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
    // The journal commits in batches of `BATCH` identities (`src/write/batches.rs`): a kill
    // leaves whole batches new, those marked ready before it, and the rest old. Kills must have
    // landed before the first ready mark (nothing new) and after one (a batch or more new).
    assert!(
        seen_new.iter().all(|&n| n % BATCH == 0 || n == ids.len()),
        "a kill left part of a batch new: {seen_new:?}"
    );
    assert!(
        seen_new.contains(&0) && seen_new.iter().any(|&n| n > 0),
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
    let run_id = run_ids(&rotated).remove(0);
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

/// Each run's identities done, from every report under `root`: the changes it committed.
fn committed_changes(root: &Path) -> Vec<(String, String)> {
    reports(root)
        .iter()
        .flat_map(|r| {
            let run = r["run_id"].as_str().unwrap().to_string();
            r["identities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["outcome"] == "done")
                .map(move |i| {
                    let id = format!(
                        "{}/{}",
                        i["node"].as_str().unwrap(),
                        i["service"].as_str().unwrap()
                    );
                    (run.clone(), id)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn hooks_run_once_per_committed_change_give_or_take_those_running_at_a_kill() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fleet");
    fleet(&root, 200, 30);
    let deploys = work.path().join("deploys");
    let posts = work.path().join("posts");
    let hook = |kind: &str, text: String| install_hook(&root, kind, "10-count", &text);
    hook(
        "deploy",
        format!(
            "echo \"$REKEY_RUN_ID $REKEY_NODE/$REKEY_SERVICE\" >> {}",
            deploys.display()
        ),
    );
    hook(
        "post",
        format!("echo \"$REKEY_RUN_ID\" >> {}", posts.display()),
    );
    // Two worker threads: at most two hooks are running (or ended, not yet journaled) when a
    // kill lands, so each kill during hooks may repeat at most two.
    const JOBS: usize = 2;
    let kills = [
        "hook_done#1",
        "hook_done#57",
        "committed",
        "hook_done#150",
        "post_hooks",
        "hook_done#199",
        "renamed",
        "hook_done#13",
        "hook_done#320",
        "ready",
        "hook_done#200",
        "hook_done#90",
    ];
    let mut during_hooks = 0usize;
    for at in kills {
        let out = bin()
            .args([
                "rotate", "--force", "--jobs", "2", "--as-of", AS_OF, "--root",
            ])
            .arg(&root)
            .env("REKEY_CRASH_AT", at)
            .output()
            .unwrap();
        match out.status.code() {
            None => during_hooks += usize::from(at.starts_with("hook_done") || at == "post_hooks"),
            Some(code) => assert!(
                matches!(code, 0 | 3),
                "{at}: exit {code}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    // The last writer finishes whatever the last kill left.
    let out = bin()
        .args(["hooks", "retry", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        during_hooks >= 6,
        "only {during_hooks} kills landed during hooks"
    );

    let changes = committed_changes(&root);
    let mut ran: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&deploys).unwrap().lines() {
        let (run, id) = line.split_once(' ').unwrap();
        *ran.entry((run.to_string(), id.to_string())).or_default() += 1;
    }
    let mut repeated = 0;
    for change in &changes {
        let n = ran.get(change).copied().unwrap_or(0);
        assert!(n >= 1, "{change:?}: its deploy hook never ran");
        assert!(
            n <= 1 + during_hooks,
            "{change:?}: its deploy hook ran {n} times, with {during_hooks} kills during hooks"
        );
        repeated += n - 1;
    }
    let committed: std::collections::BTreeSet<&(String, String)> = changes.iter().collect();
    let strays: Vec<_> = ran.keys().filter(|k| !committed.contains(k)).collect();
    assert!(
        strays.is_empty(),
        "hooks of changes never committed: {strays:?}"
    );
    eprintln!(
        "{} committed changes, {repeated} repeated deploy hooks, {during_hooks} kills during hooks",
        changes.len()
    );
    assert!(
        repeated <= JOBS * during_hooks,
        "{repeated} deploy hooks ran again after {during_hooks} kills during hooks with {JOBS} \
         threads: only those running at a kill may"
    );
    let posted = std::fs::read_to_string(&posts).unwrap();
    let runs_that_changed: std::collections::BTreeSet<&String> =
        changes.iter().map(|(run, _)| run).collect();
    for run in &runs_that_changed {
        assert!(
            posted.lines().any(|l| l == run.as_str()),
            "run {run} changed something; its post hook never ran:\n{posted}"
        );
    }
    assert_nothing_pending(&root);
    let markers = walkdir::WalkDir::new(root.join(".rekey/runs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "hooks.pending")
        .count();
    assert_eq!(markers, 0, "nothing is pending, so no run is marked");
}
