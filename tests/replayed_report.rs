//! A run killed before it saved its report gets one from the next writer's replay, made from its
//! journal: each case here runs the same attack on the same fleet twice, once to its end and
//! once killed, and the replayed report must say what the run's own said, line for line (every
//! outcome and every reason), with the same counts and the same `stopped`.

mod common;

use std::path::Path;

use common::{AS_OF, reports};
use serde_json::Value;

/// A report's identity lines as (dir, outcome, reason).
fn lines(report: &Value) -> Vec<(String, String, String)> {
    let text = |l: &Value, k: &str| l[k].as_str().unwrap_or_default().to_string();
    report["identities"]
        .as_array()
        .expect("a report lists its identities")
        .iter()
        .map(|l| (text(l, "dir"), text(l, "outcome"), text(l, "reason")))
        .collect()
}

/// A `rotate` of a fresh fleet of `n` at `root` in batches of `batch`, paused at `pause` where
/// `during` acts (given the root and the run's process id): once to its end (its report, as it
/// printed it), then, on a fleet made again at the same place, killed at `kill` and replayed by
/// the next writer (the report the replay saved).
fn own_and_replayed(
    root: &Path,
    (n, batch): (usize, &str),
    (pause, kill): (&str, &str),
    during: impl Fn(&Path, u32),
) -> (Value, Value) {
    own_and_replayed_with(root, &[], (n, batch), (pause, kill), during)
}

/// [`own_and_replayed`], `rotate` given `more` arguments.
fn own_and_replayed_with(
    root: &Path,
    more: &[&str],
    (n, batch): (usize, &str),
    (pause, kill): (&str, &str),
    during: impl Fn(&Path, u32),
) -> (Value, Value) {
    let args = [&["rotate", "--as-of", AS_OF, "--format", "json"], more].concat();
    common::fleet(root, n, 30);
    let env = [("REKEY_TEST_BATCH", batch)];
    let (code, stdout, stderr) =
        common::paused_at_pid(root, pause, &args, &env, |pid| during(root, pid));
    assert!(matches!(code, Some(0 | 3)), "the run to its end: {stderr}");
    let own: Value = serde_json::from_str(&stdout).expect("the run's report");
    std::fs::remove_dir_all(root).unwrap();
    common::fleet(root, n, 30);
    let env = [("REKEY_TEST_BATCH", batch), ("REKEY_CRASH_AT", kill)];
    let replayed = killed_and_replayed(root, &args, &env, pause, |pid| during(root, pid));
    (own, replayed)
}

/// `args` run at `root` with `env` (which kills it: `REKEY_CRASH_AT`), paused at `pause` where
/// `during` acts (given its process id), then replayed by the next writer: the report the replay
/// saved.
fn killed_and_replayed(
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    pause: &str,
    during: impl FnOnce(u32),
) -> Value {
    let (code, _, stderr) = common::paused_at_pid(root, pause, args, env, during);
    assert_eq!(code, None, "killed: {stderr}");
    let (code, _, stderr) = common::run_unpinned(root, &["hooks", "retry"]);
    assert!(stderr.contains("was interrupted"), "{code:?}: {stderr}");
    let replayed = reports(root)
        .into_iter()
        .find(|r| r["command"] == args[0])
        .expect("the replayed run's report");
    assert_eq!(replayed["recovered_by_replay"], true, "{replayed}");
    replayed
}

/// The replayed report says what the run's own said: its lines, its counts of what it did (a
/// replay does not read the fleet, so its counts of what the fleet holds are null) and whether
/// it stopped.
fn assert_same(own: &Value, replayed: &Value) {
    assert_eq!(lines(replayed), lines(own), "{replayed}");
    for count in ["done", "failed", "skipped", "credentials", "hooks_failed"] {
        let count = |r: &Value| r["counts"][count].clone();
        assert_eq!(count(replayed), count(own), "{replayed}");
    }
    assert_eq!(replayed["stopped"], own["stopped"], "{replayed}");
}

/// An identity whose directory its owner moved away while its batch was staged fails before the
/// batch is ready: a run killed once the batch is committed is replayed with that identity's
/// line, failed, in its place, and the run's own reason. Before, the replay had no line for it,
/// then a reason of its own ("the run ended before its report said why").
#[test]
fn a_replayed_report_says_why_an_identity_failed_before_its_batch_was_ready() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let (own, replayed) =
        own_and_replayed(&root, (3, "3"), ("prepared", "committed"), |root, _| {
            let moved = root.join("nodes/node-01/svc-0001");
            std::fs::rename(moved, root.join("nodes/node-01/svc-moved")).unwrap();
        });
    let outcomes: Vec<String> = lines(&own).into_iter().map(|l| l.1).collect();
    assert_eq!(outcomes, ["done", "failed", "done"], "{own}");
    assert!(
        lines(&own)[1].2.contains("was moved or replaced"),
        "the run's own reason: {own}"
    );
    assert_same(&own, &replayed);
}

/// An identity whose directory its owner moved away after its batch was ready has its new files
/// renamed in that directory, wherever it went: the run reports it failed, and so must a replay
/// of the run killed once the batch is committed. Before, the replay reported it done.
#[test]
fn a_replayed_report_says_an_identity_moved_away_during_its_renames_failed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    for kill in ["renamed", "committed"] {
        let (own, replayed) = own_and_replayed(&root, (3, "3"), ("ready", kill), |root, _| {
            let moved = root.join("nodes/node-01/svc-0001");
            std::fs::rename(moved, root.join("nodes/node-01/svc-moved")).unwrap();
        });
        let outcomes: Vec<String> = lines(&own).into_iter().map(|l| l.1).collect();
        assert_eq!(outcomes, ["done", "failed", "done"], "{own}");
        assert_same(&own, &replayed);
        // A replay killed before its own report is replayed again, and says the same.
        assert_same(&replayed, &replayed_again(&root));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// A run killed during its renames, before it could journal that a directory was moved away:
/// its replay cannot finish that identity (its new files are not at its name), reports it
/// failed, and journals so, so that a replay of that replay says the same. Before, the second
/// reported it done.
#[test]
fn an_identity_a_replay_could_not_finish_stays_failed_when_replayed_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 3, 30);
    let args = ["rotate", "--as-of", AS_OF, "--format", "json"];
    let env = [("REKEY_TEST_BATCH", "3"), ("REKEY_CRASH_AT", "renaming")];
    let first = killed_and_replayed(&root, &args, &env, "ready", |_| {
        let moved = root.join("nodes/node-01/svc-0001");
        std::fs::rename(moved, root.join("nodes/node-01/svc-moved")).unwrap();
    });
    let outcomes: Vec<String> = lines(&first).into_iter().map(|l| l.1).collect();
    assert_eq!(outcomes, ["done", "failed", "done"], "{first}");
    assert!(
        lines(&first)[1]
            .2
            .contains("what is at its name was not rotated"),
        "{first}"
    );
    assert_same(&first, &replayed_again(&root));
}

/// An identity whose directory was moved away during its renames (which went there), the run
/// killed once it journaled so: the replay never finishes it, even when its directory is back
/// at its name, and reports it failed with the run's reason, as does a replay of that replay.
/// Before, the replay finished it and reported it done (its deploy hook already dropped), and a
/// second replay said failed.
#[test]
fn an_identity_the_run_found_moved_away_is_not_finished_by_its_replay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 1, 30);
    let identity = root.join("nodes/node-00/svc-0000");
    let away = root.join("nodes/node-00/svc-moved");
    let args = ["rotate", "--as-of", AS_OF, "--deploy-hook", "true"];
    let env = [("REKEY_CRASH_AT", "renamed")];
    let (code, _, stderr) = common::paused_at_with(&root, "renaming", &args, &env, || {
        std::fs::rename(&identity, &away).unwrap();
    });
    assert_eq!(code, None, "killed: {stderr}");
    std::fs::rename(&away, &identity).unwrap();
    let (code, _, stderr) = common::run_unpinned(&root, &["hooks", "retry"]);
    assert!(stderr.contains("was interrupted"), "{code:?}: {stderr}");
    let first = reports(&root)
        .into_iter()
        .find(|r| r["command"] == "rotate")
        .expect("the replayed report");
    let line = &lines(&first)[0];
    assert_eq!(line.1, "failed", "{first}");
    assert!(line.2.contains("was moved away while its files"), "{first}");
    assert_same(&first, &replayed_again(&root));
}

/// The report of the run at `root` that a replay wrote, replayed again: the report removed (a
/// replay killed before it saved it), the next writer replays the journal once more.
fn replayed_again(root: &Path) -> Value {
    let first = reports(root)
        .into_iter()
        .find(|r| r["recovered_by_replay"] == true)
        .expect("a replayed report");
    let run = root
        .join(".rekey/runs")
        .join(first["run_id"].as_str().unwrap());
    std::fs::remove_file(run.join("report.json")).unwrap();
    let (code, _, stderr) = common::run_unpinned(root, &["hooks", "retry"]);
    assert!(stderr.contains("was interrupted"), "{code:?}: {stderr}");
    let again: Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    again
}

/// A run killed as it prepares a batch in which it left an identity untouched (a file changed
/// after the survey read it, before the run staged it): its replay undoes the batch, and a
/// replay of that replay reports the batch's identities in order, each as the first did.
/// Before, the second listed the untouched identity before the others.
#[test]
fn a_replay_replayed_again_says_what_it_said() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 12, 30);
    let args = ["rotate", "--as-of", AS_OF, "--format", "json"];
    let env = [("REKEY_TEST_BATCH", "4"), ("REKEY_CRASH_AT", "prepared#3")];
    // Paused once the survey judged its first batch of 16, the whole fleet.
    let first = killed_and_replayed(&root, &args, &env, "surveyed", |_| {
        let cert = root.join("nodes/node-09/svc-0009/cert.pem");
        let mut bytes = std::fs::read(&cert).unwrap();
        bytes.push(b'\n');
        std::fs::write(cert, bytes).unwrap();
    });
    let outcomes: Vec<String> = lines(&first).into_iter().map(|l| l.1).collect();
    let mut expected = vec!["done"; 8];
    expected.extend(["failed", "skipped", "failed", "failed"]);
    assert_eq!(outcomes, expected, "{first}");
    assert_same(&first, &replayed_again(&root));
}

/// The deploy hooks that failed before the run was killed are counted in its replayed report,
/// as in its own (the journal records how each ended).
#[test]
fn a_replayed_report_counts_the_hooks_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let more = ["--deploy-hook", "exit 1"];
    let (own, replayed) =
        own_and_replayed_with(&root, &more, (4, "2"), ("surveyed", "finishing"), |_, _| ());
    assert_eq!(own["counts"]["hooks_failed"], 4, "{own}");
    assert_same(&own, &replayed);
}

/// A run stopped by SIGTERM commits the batch in flight and leaves the rest, each `not
/// attempted`, and says it `stopped`: killed after that, before its report, its replay says the
/// same. Before, the replay had no line for the identities after the stop, and no `stopped`.
#[test]
fn a_replayed_report_keeps_what_a_stopped_run_did_not_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let (own, replayed) = own_and_replayed(&root, (6, "2"), ("prepared", "finishing"), |_, pid| {
        // SAFETY: kill(2) on the child this test started and has not waited for yet.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    });
    let outcomes: Vec<String> = lines(&own).into_iter().map(|l| l.1).collect();
    assert_eq!(
        outcomes,
        ["done", "done", "failed", "failed", "failed", "failed"],
        "{own}"
    );
    assert_eq!(own["stopped"], "interrupted by SIGTERM", "{own}");
    assert_same(&own, &replayed);
}
