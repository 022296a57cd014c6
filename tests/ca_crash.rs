//! kill -9 at every journal step of `rekey ca begin`, `switch` and `finish` (the crash points
//! of the `crash-points` feature), then the next writer: at every instant every certificate
//! verifies (openssl) against its identity's `ca.pem` and against `ca/bundle.pem`, every token
//! with a trusted CA's key; the stage is the one before or the one after, never between; and
//! the stage run again ends where an uninterrupted one would.
#![cfg(feature = "crash-points")]

mod ca_common;
mod common;

use std::path::Path;

use ca_common::*;
use common::*;

/// The steps of the change of `ca/`, then those of the trust files' batch.
const CA_STEPS: [&str; 5] = [
    "ca_prepared",
    "ca_staged",
    "ca_ready",
    "ca_exchanged",
    "ca_committed",
];
const BATCH_STEPS: [&str; 6] = [
    "prepared",
    "staged",
    "ready",
    "renaming",
    "renamed",
    "committed",
];

fn stage(root: &Path) -> &'static str {
    match (
        root.join("ca/next").exists(),
        root.join("ca/previous").exists(),
    ) {
        (false, false) => "steady",
        (true, false) => "begun",
        (false, true) => "switched",
        (true, true) => panic!("both ca/next and ca/previous"),
    }
}

fn ok(root: &Path, args: &[&str]) {
    let (code, stdout, stderr) = run(root, args);
    assert!(matches!(code, 0), "{args:?}: exit {code}: {stdout}{stderr}");
}

fn trust_files_match(root: &Path) -> bool {
    let bundle = std::fs::read(root.join("ca/bundle.pem")).unwrap();
    IDENTITIES
        .iter()
        .all(|id| std::fs::read(root.join("nodes").join(id).join("ca.pem")).unwrap() == bundle)
}

/// Every `ca.pem` is the bundle.
fn trust_files_follow_the_bundle(root: &Path, when: &str) {
    let bundle = std::fs::read(root.join("ca/bundle.pem")).unwrap();
    for id in IDENTITIES {
        let trust = std::fs::read(root.join("nodes").join(id).join("ca.pem")).unwrap();
        assert_eq!(trust, bundle, "{when}: {id}");
    }
}

/// Kills `rekey ca <command>` at `at` on a fleet brought to the stage before it by `before`,
/// then checks the invariant, runs the next writer, checks again, and finishes the stage.
fn crash(command: &str, at: &str, before: &[&[&str]], from: &str, to: &str) {
    let when = format!("ca {command} killed at {at}");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    for args in before {
        ok(root, args);
    }
    let old_key = root.join("ca/previous/ca.key");
    let old_key = old_key.exists().then(|| std::fs::read(&old_key).unwrap());
    let out = rekey()
        .args(["ca", command, "--as-of", AS_OF, "--root"])
        .arg(root)
        .env("REKEY_CRASH_AT", at)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "{when}: it was not killed");
    let now = stage(root);
    assert!(now == from || now == to, "{when}: stage {now}");
    every_identity_trusted(root, &when);

    // The next writer replays the interrupted run.
    let (code, stdout, stderr) = run_unpinned(root, &["hooks", "retry"]);
    assert_eq!(code, 0, "{when}: hooks retry: {stdout}{stderr}");
    let now = stage(root);
    assert!(
        now == from || now == to,
        "{when}: after replay: stage {now}"
    );
    every_identity_trusted(root, &format!("{when}, replayed"));
    let staged = walkdir::WalkDir::new(root.join(".rekey/runs"))
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_name() == "ca-new")
        .count();
    assert_eq!(staged, 0, "{when}: a ca-new/ left after the replay");

    // Run again, the stage ends where an uninterrupted one would.
    // (Run again in the stage it leads to, a stage brings the trust files it did not reach.)
    if now == from || !trust_files_match(root) {
        ok(root, &["ca", command]);
    }
    assert_eq!(stage(root), to, "{when}: run again");
    every_identity_trusted(root, &format!("{when}, run again"));
    trust_files_follow_the_bundle(root, &format!("{when}, run again"));
    if let Some(key) = old_key {
        no_file_holds_key(root, &key, &when);
    }
}

#[test]
fn a_begin_killed_at_any_step_leaves_the_fleet_steady_or_begun() {
    for at in CA_STEPS.iter().chain(&BATCH_STEPS) {
        crash("begin", at, &[], "steady", "begun");
    }
}

#[test]
fn a_switch_killed_at_any_step_leaves_the_fleet_begun_or_switched() {
    for at in CA_STEPS {
        crash("switch", at, &[&["ca", "begin"]], "begun", "switched");
    }
}

#[test]
fn a_finish_killed_at_any_step_leaves_the_fleet_switched_or_steady() {
    let before: &[&[&str]] = &[&["ca", "begin"], &["ca", "switch"], &["rotate"]];
    for at in CA_STEPS.iter().chain(&BATCH_STEPS) {
        crash("finish", at, before, "switched", "steady");
    }
}
