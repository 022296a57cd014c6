//! A plan, a clock, a selector and a signal are inputs like any other: none of them can destroy a
//! credential or revive one behind a person's back. Each test is a case a new user once hit.
//! "A plan can only narrow what rekey would do; it can never widen it."

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{
    AS_OF, as_of, build, ca_spec, days, fleet, issued, rekey, reports, run, snapshot, whole,
};
use rekey::fleet::{IdentitySpec, window};
use rekey::keys::KeyAlg;

/// Runs `rekey args…` (no implied root or date); returns (code, stdout, stderr).
fn rekey_raw(args: &[&str]) -> (i32, String, String) {
    let out = rekey().args(args).output().expect("rekey runs");
    (
        out.status.code().expect("rekey exits with a code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes the plan of `root` as of `at` to a new file; returns its path and text.
fn plan_at(root: &Path, dir: &Path, at: &str) -> (PathBuf, String) {
    let path = dir.join("plan.toml");
    let (code, _, stderr) = rekey_raw(&[
        "plan",
        "--root",
        root.to_str().unwrap(),
        "--as-of",
        at,
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(matches!(code, 3 | 4), "{stderr}");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

fn apply(plan: &Path, at: &str) -> (i32, String, String) {
    rekey_raw(&["apply", plan.to_str().unwrap(), "--as-of", at])
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn audit_log(root: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(root.join(".rekey/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// The audit log's `recovered` lines: each (outcome, detail).
fn recovered(root: &Path) -> Vec<(String, String)> {
    audit_log(root)
        .iter()
        .filter(|l| l["event"] == "recovered")
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (text("outcome"), text("detail"))
        })
        .collect()
}

#[test]
fn a_plan_naming_an_identity_twice_is_refused_and_no_key_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let ids = fleet(&root, 3, 30);
    let (_, text) = plan_at(&root, dir.path(), AS_OF);
    let first = text.find("[[identity]]").unwrap();
    let second = text[first + 1..].find("[[identity]]").unwrap() + first + 1;
    let twice = write(
        &dir.path().join("twice.toml"),
        &format!("{text}\n{}", &text[first..second]),
    );
    let before = snapshot(&root);
    let (code, _, stderr) = apply(&twice, AS_OF);
    assert_eq!(code, 1, "{stderr}");
    let line = |at: usize| text[..at].lines().count() + 1;
    let named = format!("is planned twice (line {} and line ", line(first));
    assert!(stderr.contains(&named), "both lines named: {stderr}");
    assert_eq!(snapshot(&root), before, "nothing written");
    assert!(!root.join(".rekey/runs").exists(), "no run started");
    let key = std::fs::metadata(root.join(&ids[0]).join("key.pem")).unwrap();
    assert!(key.len() > 100, "the key is whole");
}

#[test]
fn a_plan_cannot_revive_an_identity_that_needs_recover() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let specs = [
        IdentitySpec::new("n1", "mocctl", issued(95)), // token expired: recover
        IdentitySpec::new("n2", "mocctl", issued(30)), // due
        // Its token expires half a day after AS_OF: valid when planned, expired a day later.
        IdentitySpec::new(
            "n3",
            "mocctl",
            window(as_of() - days(90) + chrono::TimeDelta::hours(12), 90),
        ),
    ];
    build(&root, &ca_spec(KeyAlg::P256), &specs);
    let (_, text) = plan_at(&root, dir.path(), AS_OF);
    let flipped = write(
        &dir.path().join("flipped.toml"),
        &text.replace("action = \"recover\"", "action = \"rotate\""),
    );
    let before = snapshot(&root);
    let (code, stdout, _) = apply(&flipped, AS_OF);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("n1    mocctl   skipped  needs rekey recover: token expired"),
        "{stdout}"
    );
    let after = snapshot(&root);
    for f in ["cert.pem", "key.pem", "token.jwt"] {
        let rel = format!("nodes/n1/mocctl/{f}");
        assert_eq!(before[&rel], after[&rel], "{rel} untouched");
    }
    assert_ne!(
        before["nodes/n2/mocctl/token.jwt"], after["nodes/n2/mocctl/token.jwt"],
        "the due one is rotated"
    );
    assert!(
        audit_log(&root).is_empty(),
        "apply never writes the audit log"
    );

    // A plan made while n3's token was valid, applied after it expired: n3 needs a person now.
    let dir2 = tempfile::tempdir().unwrap();
    let root2 = dir2.path().join("fleet");
    build(&root2, &ca_spec(KeyAlg::P256), &specs[2..]);
    let (plan, text) = plan_at(&root2, dir2.path(), AS_OF);
    assert!(text.contains("action = \"rotate\""));
    let (code, stdout, _) = apply(&plan, "2026-11-29T00:00:00Z");
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("needs rekey recover: token expired 2026-11-28"),
        "{stdout}"
    );
}

#[test]
fn numbers_in_a_plan_are_never_used_to_issue() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let (plan, text) = plan_at(&root, dir.path(), AS_OF);
    assert!(
        text.contains("\nvalidity_days = 90\nkeys = \"rotate\"\npolicy_sha256 = \""),
        "{text}"
    );
    let before = snapshot(&root);
    let edits = [
        (
            "validity",
            text.replace("validity_days = 90", "validity_days = 3650"),
            "the plan was edited",
        ),
        (
            "keys",
            text.replace("keys = \"rotate\"", "keys = \"reuse\""),
            "the plan was edited",
        ),
        (
            "no policy digest",
            text.replace("policy_sha256", "# policy_sha256"),
            "made by an older rekey",
        ),
    ];
    for (name, edited, message) in edits {
        let (code, _, stderr) = apply(&write(&dir.path().join("edited.toml"), &edited), AS_OF);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
    // The policy changed after the plan was made.
    std::fs::write(root.join("rekey.toml"), "version = 1\nvalidity_days = 30\n").unwrap();
    let (code, _, stderr) = apply(&plan, AS_OF);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the policy changed since the plan"),
        "{stderr}"
    );
    std::fs::remove_file(root.join("rekey.toml")).unwrap();
    assert_eq!(snapshot(&root), before, "refused plans change nothing");

    // Applied a day after it was made, validity runs 90 days from the run date.
    let (code, stdout, _) = apply(&plan, "2026-11-29T00:00:00Z");
    assert_eq!(code, 0, "{stdout}");
    let report = &reports(&root)[0];
    assert_eq!(report["as_of"], "2026-11-29T00:00:00Z");
    let states = common::states(&root);
    assert!(
        states.values().all(|(s, _)| s == "fresh" || s == "due"),
        "{states:?}"
    );
}

#[test]
fn a_plan_older_than_the_policy_allows_or_from_after_the_run_date_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let (plan, _) = plan_at(&root, dir.path(), "2026-11-20T00:00:00Z");
    let (code, _, stderr) = apply(&plan, AS_OF);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is 192 hours old"), "{stderr}");
    assert!(stderr.contains("max_plan_age_hours = 168"), "{stderr}");
    let (code, _, stderr) = apply(&plan, "2026-11-19T23:59:59Z");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("after this run's date"), "{stderr}");
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nmax_plan_age_hours = 240\n",
    )
    .unwrap();
    let (plan, _) = plan_at(&root, dir.path(), "2026-11-20T00:00:00Z");
    let (code, stdout, stderr) = apply(&plan, AS_OF);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn a_writing_run_date_ahead_of_the_clock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    // Dated from the clock (this test is about the clock), so that it is sound a day ahead.
    let now = Utc::now();
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = window(now - days(365), 3650);
    let ids: Vec<IdentitySpec> = ["n1", "n2"]
        .iter()
        .map(|n| IdentitySpec::new(n, "mocctl", window(now - days(30), 90)))
        .collect();
    build(&root, &ca, &ids);
    let before = snapshot(&root);
    let ahead = (now + chrono::TimeDelta::days(1)).to_rfc3339();
    let (plan, _) = plan_at(&root, dir.path(), &ahead);
    let r = root.to_str().unwrap();
    for args in [
        vec!["rotate", "--root", r, "--as-of", &ahead],
        vec!["apply", plan.to_str().unwrap(), "--as-of", &ahead],
        vec![
            "recover", "--root", r, "--all", "--reason", "x", "--yes", "--as-of", &ahead,
        ],
    ] {
        let (code, _, stderr) = rekey_raw(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("is ahead of the system clock"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(snapshot(&root), before);
    assert!(
        !root.join(".rekey").exists(),
        "no lock taken, no run started"
    );
    // status and plan may look ahead: they write nothing.
    let (code, _, _) = rekey_raw(&["status", "--root", r, "--as-of", &ahead]);
    assert_eq!(code, 3);
}

#[test]
fn a_run_date_so_far_back_that_its_credentials_are_already_expired_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let then: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &[IdentitySpec::new(
            "n1",
            "mocctl",
            window(then - days(30), 90),
        )],
    );
    let (code, stdout, stderr) = rekey_raw(&[
        "rotate",
        "--root",
        root.to_str().unwrap(),
        "--as-of",
        "2026-01-01",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("rekey: warning: the run date is so far back that what this run issues expired at 2026-04-01T00:00:00Z"), "{stderr}");
    assert!(
        stdout.contains("warning: the run date is so far back"),
        "{stdout}"
    );
    let report = &reports(&root)[0];
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("expired at 2026-04-01"),
        "{report}"
    );
    assert_eq!(report["as_of"], "2026-01-01T00:00:00Z");
    assert_ne!(
        report["started"], report["as_of"],
        "the wall clock is recorded too"
    );
}

#[test]
fn recover_checks_the_ca_key_and_every_selector_before_auditing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let specs = [
        IdentitySpec::new("n1", "kms", issued(95)),
        IdentitySpec::new("n2", "kms", issued(95)),
        IdentitySpec::new("n2", "csi", issued(30)),
    ];
    build(&root, &ca_spec(KeyAlg::P256), &specs);
    let r = root.to_str().unwrap();
    let recover = |extra: &[&str]| {
        let mut args = vec![
            "recover", "--root", r, "--as-of", AS_OF, "--reason", "test", "--yes",
        ];
        args.extend_from_slice(extra);
        rekey_raw(&args)
    };
    let cases: [(&[&str], &str); 3] = [
        (
            &["--node", "nosuch"],
            "--node nosuch matches no identity in the fleet",
        ),
        (
            &["--service", "kms", "--service", "kmz"],
            "--service kmz matches no identity in the fleet",
        ),
        (
            &["--node", "n1", "--service", "csi"],
            "--node n1 --service csi together match no identity",
        ),
    ];
    for (args, message) in cases {
        let (code, _, stderr) = recover(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // A selection that exists but needs no recovery: nothing to do, said so.
    let (code, _, stderr) = recover(&["--node", "n2", "--service", "csi"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the selected identity is not in state recover"),
        "{stderr}"
    );

    let key = root.join("ca/ca.key");
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let before = snapshot(&root);
    let (code, _, stderr) = recover(&["--all"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ca.key"), "{stderr}");
    assert!(
        audit_log(&root).is_empty(),
        "nothing audited: {:?}",
        audit_log(&root)
    );
    assert_eq!(snapshot(&root), before);
    std::fs::write(&key, saved).unwrap();

    let (code, _, stderr) = recover(&["--service", "kms"]);
    assert_eq!(code, 0, "{stderr}");
    let log = audit_log(&root);
    let requested: Vec<_> = log.iter().filter(|l| l["event"] == "requested").collect();
    let recovered: Vec<_> = log.iter().filter(|l| l["event"] == "recovered").collect();
    assert_eq!((requested.len(), recovered.len()), (2, 2), "{log:?}");
    for r in &requested {
        assert!(
            recovered.iter().any(|o| o["run_id"] == r["run_id"]
                && o["node"] == r["node"]
                && o["outcome"] == "done"),
            "{r} has its outcome"
        );
    }
}

#[test]
fn a_recovery_cut_short_gets_its_outcomes_from_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &[
            IdentitySpec::new("n1", "kms", issued(95)),
            IdentitySpec::new("n2", "kms", issued(95)),
        ],
    );
    let (code, _, _) = common::run_env(
        &root,
        &["recover", "--all", "--reason", "test", "--yes"],
        &[("REKEY_CRASH_AT", "ready")],
    );
    assert_eq!(code, None, "killed at the ready mark");
    let log = audit_log(&root);
    assert_eq!(log.len(), 2, "requested only, so far: {log:?}");
    assert!(
        log.iter()
            .all(|l| l["event"] == "requested" && l["run_id"].is_string())
    );
    assert_eq!(
        run(&root, &["rotate"]).0,
        0,
        "the next writer replays the recovery"
    );
    let log = audit_log(&root);
    let recovered: Vec<_> = log.iter().filter(|l| l["event"] == "recovered").collect();
    assert_eq!(recovered.len(), 2, "{log:?}");
    for o in recovered {
        assert_eq!(o["run_id"], log[0]["run_id"]);
        assert_eq!(o["outcome"], "done", "{o}");
        assert_eq!(o["operator"], log[0]["operator"]);
    }
}

#[test]
fn rollback_dry_run_is_the_rollback_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    assert_eq!(run(&root, &["rotate"]).0, 0);
    let id = reports(&root)[0]["run_id"].as_str().unwrap().to_string();
    std::fs::write(root.join("nodes/node-01/svc-0001/token.jwt"), "edited\n").unwrap();
    let before = snapshot(&root);
    let (code, stdout, stderr) = rekey_raw(&[
        "rollback",
        &id,
        "--dry-run",
        "--root",
        root.to_str().unwrap(),
    ]);
    // The rollback itself skips the identity whose file changed, whole, and exits 3: so does
    // its dry run.
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.starts_with("dry run (rollback): 1 done"), "{stdout}");
    assert!(stdout.contains("node-00  svc-0000  done"), "{stdout}");
    assert!(
        stdout.contains("node-01  svc-0001  skipped  token.jwt changed since run"),
        "{stdout}"
    );
    assert_eq!(snapshot(&root), before);
    assert_eq!(reports(&root).len(), 1, "no run started");
    assert_eq!(runs_made(&root), 1, "no run directory made");
}

/// Sends `signal` to a `rotate` of 2,500 identities once `ready` says so; returns (exit code,
/// report, ids).
fn rotate_interrupted(
    signal: i32,
    ready: impl Fn(&str) -> bool,
) -> (i32, serde_json::Value, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let ids = fleet(&root, 2500, 30);
    let before = snapshot(&root);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(["rotate", "--as-of", AS_OF, "--root"])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let journal = std::fs::read_dir(root.join(".rekey/runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.unwrap().path().join("journal.jsonl")).ok());
        if journal.as_deref().is_some_and(&ready) {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got there");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signalling a child process this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let code = child
        .wait()
        .unwrap()
        .code()
        .expect("the run exits by itself");
    let report = reports(&root)
        .pop()
        .expect("the interrupted run wrote its report");
    let now = snapshot(&root);
    whole(&ids, &before, &now, "interrupted");
    assert!(common::temp_files(&root).is_empty());
    assert_eq!(
        run(&root, &["rotate"]).0,
        0,
        "the lock was released; the rerun finishes"
    );
    let done = whole(&ids, &before, &snapshot(&root), "rerun");
    assert_eq!(done, ids.len());
    (code, report, ids, dir)
}

#[test]
fn sigterm_stops_a_rotate_after_the_batch_in_flight_with_a_report() {
    let (code, report, ids, _dir) =
        rotate_interrupted(libc::SIGTERM, |j| j.contains("\"op\":\"commit\""));
    assert_eq!(report["stopped"], "interrupted by SIGTERM", "{report}");
    let done = report["counts"]["done"].as_u64().unwrap() as usize;
    // Journal batches are of 512 identities (src/write/batches.rs): whole batches are done.
    assert!(
        done >= 512 && done.is_multiple_of(512) && done < ids.len(),
        "stopped between batches: {done}"
    );
    assert_eq!(code, 3, "some identities were done");
    let not_tried = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["reason"] == "not attempted: the run was stopped by SIGTERM")
        .count();
    assert_eq!(done + not_tried, ids.len(), "{report}");
}

#[test]
fn sigint_before_the_first_commit_stops_a_rotate_with_nothing_done() {
    let (code, report, _, _dir) =
        rotate_interrupted(libc::SIGINT, |j| j.contains("\"op\":\"start\""));
    assert_eq!(report["stopped"], "interrupted by SIGINT", "{report}");
    let done = report["counts"]["done"].as_u64().unwrap();
    // The signal lands before the first batch commits or while it does: 1 with none done, else 3.
    assert_eq!(code, if done == 0 { 1 } else { 3 }, "{report}");
}

/// A plan says how many identities follow: one cut exactly where an identity begins (TOML) or
/// with an entry taken out (JSON) parses, and is refused; one without the count is refused too.
#[test]
fn a_plan_whose_identity_count_disagrees_or_is_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 30);
    let (_, text) = plan_at(&root, dir.path(), AS_OF);
    assert!(text.contains("\nidentities = 3\n"), "{text}");
    let last = text.rfind("\n[[identity]]").unwrap();
    let cut = write(&dir.path().join("cut.toml"), &text[..last + 1]);
    let (code, stdout, stderr) = rekey_raw(&[
        "plan",
        "--root",
        root.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ]);
    assert_eq!(code, 3, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["identities"], 3);
    let mut short = json.clone();
    short["identity"].as_array_mut().unwrap().pop();
    let short = write(&dir.path().join("short.json"), &short.to_string());
    let mut none = json.clone();
    none.as_object_mut().unwrap().remove("identities");
    let none = write(&dir.path().join("none.json"), &none.to_string());
    let before = snapshot(&root);
    for (plan, needle) in [
        (
            &cut,
            "the plan says identities = 3 but holds 2 identity entries",
        ),
        (
            &short,
            "the plan says identities = 3 but holds 2 identity entries",
        ),
        (
            &none,
            "has no identity count: make a new plan with this rekey",
        ),
    ] {
        let (code, _, stderr) = apply(plan, AS_OF);
        assert_eq!(code, 1, "{}: {stderr}", plan.display());
        assert!(stderr.contains(needle), "{}: {stderr}", plan.display());
        assert_eq!(snapshot(&root), before, "nothing written");
        assert!(!root.join(".rekey/runs").exists(), "no run started");
    }
}

/// A plan larger than 64 MiB is refused before it is read; from stdin, after 64 MiB and one byte.
/// What a message quotes of a plan's line is at most 200 bytes.
#[test]
fn an_oversized_plan_is_refused_unread_and_messages_quote_little_of_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let (_, text) = plan_at(&root, dir.path(), AS_OF);
    let big = dir.path().join("big.toml");
    let mut file = std::fs::File::create(&big).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.set_len(text.len() as u64 + (64 << 20)).unwrap(); // sparse: not written byte by byte
    let (code, _, stderr) = apply(&big, AS_OF);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("larger than a plan can be"), "{stderr}");
    assert!(stderr.contains("it was not read"), "{stderr}");

    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(["apply", "-", "--as-of", AS_OF])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = std::thread::spawn(move || {
        let chunk = vec![b'#'; 1 << 20];
        let mut sent = 0usize;
        // Up to 80 MiB: rekey stops reading after 64 MiB and one byte, and the pipe then breaks.
        while sent < 80 << 20 && stdin.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let out = child.wait_with_output().unwrap();
    let sent = feed.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad plan (stdin): it is larger than a plan can be"),
        "{stderr}"
    );
    assert!(sent < 80 << 20, "rekey stopped reading ({sent} bytes sent)");

    let long = "y".repeat(1 << 20);
    for (name, plan) in [
        (
            "a TOML syntax error on a 1 MiB line",
            format!("{text}\nbad = {long}\n"),
        ),
        (
            "a 1 MiB node name",
            text.replacen("node = \"n", &format!("node = \"{long}"), 1),
        ),
        (
            "a 1 MiB action",
            text.replacen("action = \"rotate\"", &format!("action = \"{long}\""), 1),
        ),
    ] {
        let plan = write(&dir.path().join("long.toml"), &plan);
        let (code, _, stderr) = apply(&plan, AS_OF);
        assert_eq!(code, 1, "{name}: {}", &stderr[..stderr.len().min(300)]);
        assert!(
            stderr.contains("yyy…"),
            "{name}: {}",
            &stderr[..stderr.len().min(300)]
        );
        assert!(
            stderr.len() < 2000,
            "{name}: {} bytes of message",
            stderr.len()
        );
    }
}

/// How many run directories `.rekey/runs` holds.
fn runs_made(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join(".rekey/runs")).map_or(0, |d| d.count())
}

/// A fleet of 600 identities over 20 nodes, all due but two in state recover, last in the
/// fleet's order (`node-18/svc-0598`, `node-19/svc-0599`): far past what a writing run has read
/// ahead when it pauses before its first batch.
fn two_to_recover_last(root: &Path) {
    common::fleet_by(root, 600, |i| if i >= 598 { 120 } else { 30 });
}

/// An identity `recover` chose in its first read of the fleet but finds otherwise in its second
/// (its files changed between the two) is left alone and reported skipped with what it is now;
/// one gone from the fleet by then is reported skipped as gone. In the report, the table's
/// counts and the audit's `recovered` line alike: before, neither had a report line after
/// stderr said "recovering …", and the audit said "not attempted: the run ended before it".
#[test]
fn identities_chosen_then_changed_or_gone_are_reported_skipped_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    two_to_recover_last(&root);
    let (changed, gone) = (
        root.join("nodes/node-18/svc-0598"),
        root.join("nodes/node-19/svc-0599"),
    );
    let args = ["recover", "--all", "--reason", "expired", "--yes"];
    let args = [&args[..], &["--as-of", AS_OF, "--format", "json"]].concat();
    // Between the two reads: one identity's files become a healthy neighbour's (whose token
    // names the neighbour), the other's directory is removed.
    let (code, stdout, stderr) = common::paused_at(&root, "surveyed", &args, || {
        for file in ["cert.pem", "key.pem", "token.jwt"] {
            let neighbour = root.join("nodes/node-18/svc-0578").join(file);
            std::fs::copy(neighbour, changed.join(file)).unwrap();
        }
        std::fs::remove_dir_all(&gone).unwrap();
    });
    assert!(stderr.contains("recovering node-18/svc-0598"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    let lines: Vec<(String, String, String)> = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (text("dir"), text("outcome"), text("reason"))
        })
        .collect();
    let changed_why = "no longer in state recover when the run reached it (now: identity has a \
                       problem: token.jwt sub does not name this identity (node-18/svc-0598)): the fleet changed since \
                       it was first read; left alone";
    let gone_why = "no longer in the fleet when the run reached it: the fleet changed since it \
                    was first read";
    assert_eq!(
        lines,
        [
            (
                "nodes/node-18/svc-0598".into(),
                "skipped".into(),
                changed_why.into()
            ),
            (
                "nodes/node-19/svc-0599".into(),
                "skipped".into(),
                gone_why.into()
            ),
        ],
        "{stderr}"
    );
    assert_eq!(report["counts"]["skipped"], 2, "{report}");
    // What is left for a person is what the run found as it acted: nothing in state recover,
    // the changed identity's problem.
    assert_eq!(report["counts"]["needs_recover"], 0, "{report}");
    assert_eq!(report["counts"]["problems"], 1, "{report}");
    let left: Vec<(&str, &str)> = report["needs_attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["dir"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(left, [("nodes/node-18/svc-0598", "problem")], "{report}");
    assert_eq!(report["counts"]["done"], 0, "{report}");
    assert_eq!(code, 3, "{stderr}");
    let log = audit_log(&root);
    let recovered = recovered(&root);
    assert_eq!(
        recovered,
        [
            ("skipped".into(), changed_why.into()),
            ("skipped".into(), gone_why.into()),
        ],
        "{log:?}"
    );
}

/// What `apply` leaves for a person is what it found as it acted, less what it did: an identity
/// that needed recover when the plan was made but is gone by the run is not counted, nor listed.
#[test]
fn apply_counts_what_is_left_for_a_person_as_it_acted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    two_to_recover_last(&root);
    let (plan, _) = plan_at(&root, dir.path(), AS_OF);
    let args = [
        "apply",
        plan.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ];
    let gone = root.join("nodes/node-19/svc-0599");
    let (code, stdout, stderr) = common::paused_at(&root, "surveyed", &args, || {
        std::fs::remove_dir_all(&gone).unwrap();
    });
    assert_eq!(code, 4, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["counts"]["done"], 598, "{stderr}");
    assert_eq!(report["counts"]["needs_recover"], 1, "{report}");
    let left: Vec<&str> = report["needs_attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["dir"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["nodes/node-18/svc-0598"], "{stderr}");
}

/// A run killed after a batch in which it left an identity untouched (chosen by `recover`'s
/// first read, changed by its second): the replay's report has that identity's line, skipped
/// and why, in its place, as the run's own would have, and the audit settles it as skipped:
/// whether its batch staged nothing, was committed with another identity, or is the one the
/// replay undoes. Before, the journal held only what was staged: the replayed report had no line
/// for it, and the audit said "failed: not attempted".
#[test]
fn a_replayed_report_keeps_the_identities_a_batch_left_untouched() {
    let changed_why = "no longer in state recover when the run reached it (now: identity has a \
                       problem: token.jwt sub does not name this identity (node-18/svc-0598)): the fleet changed since \
                       it was first read; left alone";
    let interrupted = "interrupted before its files were replaced: left as it was";
    // node-17/svc-0597, node-18/svc-0598 (left untouched), node-19/svc-0599 are recovered, in
    // batches of one (the untouched one's batch stages nothing), of two (it shares a committed
    // batch) or of three (the run is killed at the batch's prepare, which the replay undoes).
    for (batch, kill, first, last) in [
        ("1", "prepared#2", "done", "failed"),
        ("2", "prepared#2", "done", "failed"),
        ("3", "prepared#1", "failed", "failed"),
    ] {
        let what = format!("batches of {batch}");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fleet");
        common::fleet_by(&root, 600, |i| if i >= 597 { 120 } else { 30 });
        let changed = root.join("nodes/node-18/svc-0598");
        let args = ["recover", "--all", "--reason", "expired", "--yes"];
        let args = [&args[..], &["--as-of", AS_OF, "--format", "json"]].concat();
        let env = [("REKEY_TEST_BATCH", batch), ("REKEY_CRASH_AT", kill)];
        let (code, _, stderr) = common::paused_at_with(&root, "surveyed", &args, &env, || {
            for file in ["cert.pem", "key.pem", "token.jwt"] {
                let neighbour = root.join("nodes/node-18/svc-0578").join(file);
                std::fs::copy(neighbour, changed.join(file)).unwrap();
            }
        });
        assert_eq!(code, None, "{what}: killed at {kill}: {stderr}");
        let (code, _, stderr) = common::run_unpinned(&root, &["hooks", "retry"]);
        assert!(
            stderr.contains("was interrupted"),
            "{what}: {code}: {stderr}"
        );
        let report = reports(&root)
            .into_iter()
            .find(|r| r["command"] == "recover")
            .expect("the replayed run's report");
        assert_eq!(report["recovered_by_replay"], true, "{what}: {report}");
        let lines: Vec<(&str, &str, &str)> = report["identities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let text = |k: &str| l[k].as_str().unwrap_or_default();
                (text("dir"), text("outcome"), text("reason"))
            })
            .collect();
        let why = |outcome| if outcome == "done" { "" } else { interrupted };
        assert_eq!(
            lines,
            [
                ("nodes/node-17/svc-0597", first, why(first)),
                ("nodes/node-18/svc-0598", "skipped", changed_why),
                ("nodes/node-19/svc-0599", last, why(last)),
            ],
            "{what}: {report}"
        );
        assert_eq!(report["counts"]["skipped"], 1, "{what}: {report}");
        let recovered = recovered(&root);
        assert!(
            recovered.contains(&("skipped".into(), changed_why.into())),
            "{what}: {recovered:?}"
        );
    }
}
