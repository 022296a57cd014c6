//! The monthly pipeline's contract, through the real binary: complete run results (also when
//! there is nothing to do), exit codes a pipeline can branch on, plans on stdin and fleets
//! mounted elsewhere, canary and forced runs, and retention of backups.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{
    AS_OF, assert_report_valid, build, ca_spec, fleet, issued, openssl, rekey, reports, run,
    snapshot,
};
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `rekey args…` with `stdin` fed in; returns (code, stdout, stderr).
fn rekey_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plan_text(root: &Path) -> String {
    let (code, stdout, _) = run(root, &["plan"]);
    assert!(matches!(code, 3 | 4));
    stdout
}

#[test]
fn every_run_reports_in_full_also_when_there_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut specs = vec![
        IdentitySpec::new("n1", "mocctl", issued(30)),
        IdentitySpec::new("n1", "kms", issued(95)), // token expired: left for recover
    ];
    let mut reuse = IdentitySpec::new("n2", "mocctl", issued(30));
    reuse.token = None;
    specs.push(reuse);
    build(root, &ca_spec(KeyAlg::P256), &specs);
    let old_serial = openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        root.join("nodes/n1/mocctl/cert.pem").to_str().unwrap(),
    ]);

    let (code, stdout, stderr) = run(root, &["rotate", "--format", "json"]);
    assert_eq!(code, 4, "done, but an identity needs recover: {stderr}");
    let printed = json(&stdout);
    assert_report_valid(&printed, "rotate --format json");
    let saved = reports(root);
    assert_eq!(saved.len(), 1);
    assert_eq!(
        printed, saved[0],
        "stdout and report.json are the same document"
    );
    let r = &saved[0];
    assert_eq!(r["outcome"], "done");
    assert_eq!(r["exit_code"], 4);
    assert_eq!(r["counts"]["done"], 2);
    assert_eq!(r["counts"]["credentials"], 3);
    assert_eq!(r["counts"]["needs_recover"], 1);
    assert_eq!(r["needs_attention"][0]["dir"], "nodes/n1/kms");
    assert!(r["policy_sha256"].as_str().unwrap().len() == 64);
    let n1 = &r["identities"][0];
    assert_eq!(n1["dir"], "nodes/n1/mocctl");
    let new_serial = openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        root.join("nodes/n1/mocctl/cert.pem").to_str().unwrap(),
    ]);
    assert_eq!(
        format!("serial={}\n", n1["cert"]["old_serial"].as_str().unwrap()),
        old_serial
    );
    assert_eq!(
        format!("serial={}\n", n1["cert"]["new_serial"].as_str().unwrap()),
        new_serial
    );
    assert_eq!(n1["cert"]["key"], "rotated");
    assert_eq!(n1["cert"]["new_not_after"], "2027-02-26T00:00:00Z");
    assert_eq!(n1["token"]["new_exp"], "2027-02-26T00:00:00Z");
    assert_eq!(n1["token"]["old_exp"], "2027-01-27T00:00:00Z");

    // Nothing left to do: still a run, a report, and the same document on stdout.
    let (code, stdout, _) = run(root, &["rotate", "--format", "json"]);
    assert_eq!(code, 4);
    let printed = json(&stdout);
    let saved = reports(root);
    assert_eq!(saved.len(), 2);
    assert_eq!(printed, saved[1]);
    assert_eq!(printed["outcome"], "nothing to do");
    assert_eq!(printed["identities"], serde_json::json!([]));
    let (code, stdout, _) = run(root, &["rotate"]);
    assert_eq!(code, 4);
    assert!(stdout.contains("(rotate): nothing to do"), "{stdout}");

    // `runs --format json` lists them, oldest first.
    let out = rekey()
        .args(["runs", "--format", "json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let listed = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(listed[1]["outcome"], "nothing to do");
}

#[test]
fn a_failure_of_this_run_wins_over_attention_that_was_already_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &[
            IdentitySpec::new("n1", "mocctl", issued(30)),
            IdentitySpec::new("n2", "mocctl", issued(30)),
            IdentitySpec::new("n3", "kms", issued(95)),
        ],
    );
    let plan = plan_text(&root);
    std::fs::write(root.join("nodes/n1/mocctl/token.jwt"), "changed\n").unwrap();
    let (code, stdout, stderr) = rekey_with_stdin(
        &["apply", "-", "--as-of", AS_OF, "--format", "json"],
        plan.as_bytes(),
    );
    assert_eq!(code, 3, "{stderr}");
    let r = json(&stdout);
    assert_report_valid(&r, "apply");
    assert_eq!(r["outcome"], "partial");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(
        (
            r["counts"]["done"].as_u64(),
            r["counts"]["skipped"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(r["counts"]["needs_recover"], 1, "both counts are there");
}

#[test]
fn a_plan_comes_from_stdin_and_applies_to_a_fleet_mounted_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 30);
    let plan = plan_text(&root);
    let elsewhere = dir.path().join("mounted");
    common::copy(&root, &elsewhere);
    let before = snapshot(&root);
    let (code, stdout, stderr) = rekey_with_stdin(
        &[
            "apply",
            "-",
            "--as-of",
            AS_OF,
            "--root",
            elsewhere.to_str().unwrap(),
        ],
        plan.as_bytes(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(snapshot(&root), before, "the plan's own root is untouched");
    assert_ne!(
        snapshot(&elsewhere),
        before,
        "the fleet named by --root was rotated"
    );

    for (name, input, message) in [
        ("empty", "", "bad plan (stdin): it is empty"),
        ("truncated", &plan[..plan.len() / 3], "bad plan (stdin)"),
    ] {
        let (code, _, stderr) =
            rekey_with_stdin(&["apply", "-", "--as-of", AS_OF], input.as_bytes());
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
    let other = dir.path().join("other");
    fleet(&other, 1, 30);
    let (code, _, stderr) = rekey_with_stdin(
        &[
            "apply",
            "-",
            "--as-of",
            AS_OF,
            "--root",
            other.to_str().unwrap(),
        ],
        plan.as_bytes(),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("was made for another CA"), "{stderr}");
}

/// `rotate --dry-run` prints the report the run would write (the table, or the JSON report
/// with "dry_run": true); a plan is `rekey plan`'s: `--format toml` and `-o` are refused.
#[test]
fn rotate_dry_run_prints_the_report_the_run_would_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let (code, stdout, _) = run(&root, &["rotate", "--dry-run", "--format", "json"]);
    assert_eq!(code, 0);
    let report = json(&stdout);
    assert_eq!(report["version"], 3);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["counts"]["done"], 2);
    for args in [
        &["rotate", "--dry-run", "--format", "toml"][..],
        &["rotate", "--format", "toml"],
    ] {
        let (code, _, stderr) = run(&root, args);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("rekey plan writes it"), "{stderr}");
    }
    let (code, _, stderr) = run(&root, &["rotate", "--dry-run", "-o", "-"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!root.join(".rekey").exists(), "nothing written");
}

#[test]
fn a_canary_run_changes_only_its_selection_and_a_forced_one_also_what_it_would_keep() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let specs = [
        IdentitySpec::new("node-01", "mocctl", issued(30)),
        IdentitySpec::new("node-01", "kms", issued(10)), // certificate healthy, token due
        IdentitySpec::new("node-02", "mocctl", issued(30)),
        IdentitySpec::new("node-02", "kva", issued(95)), // recover
    ];
    build(&root, &ca_spec(KeyAlg::P256), &specs);
    let before = snapshot(&root);
    for (args, message) in [
        (
            vec!["rotate", "--node", "node-09"],
            "--node node-09 matches no identity",
        ),
        (
            vec!["rotate", "--node", "node-01", "--service", "kva"],
            "together match no identity",
        ),
    ] {
        let (code, _, stderr) = run(&root, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = run(&root, &["rotate", "--node", "node-01"]);
    assert_eq!(
        code, 0,
        "the canary's own identities are all fine: {stderr}"
    );
    let after = snapshot(&root);
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|k| k.starts_with("nodes/node-01/")),
        "{changed:?}"
    );
    assert_eq!(
        before["nodes/node-01/kms/cert.pem"], after["nodes/node-01/kms/cert.pem"],
        "kept"
    );

    // Forced: what would be kept is rotated too; never what needs recover.
    let (code, _, stderr) = run(&root, &["rotate", "--force"]);
    assert_eq!(code, 4, "{stderr}");
    let forced = snapshot(&root);
    assert_ne!(
        forced["nodes/node-01/kms/cert.pem"],
        after["nodes/node-01/kms/cert.pem"]
    );
    assert_ne!(
        forced["nodes/node-01/mocctl/cert.pem"], after["nodes/node-01/mocctl/cert.pem"],
        "fresh, forced"
    );
    for f in ["cert.pem", "key.pem", "token.jwt"] {
        let rel = format!("nodes/node-02/kva/{f}");
        assert_eq!(forced[&rel], before[&rel], "{rel}: recover is never forced");
    }

    // apply takes the same selectors.
    let plan = plan_text(&root);
    let (code, _, stderr) = rekey_with_stdin(
        &["apply", "-", "--as-of", AS_OF, "--service", "nosuch"],
        plan.as_bytes(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--service nosuch matches no identity"),
        "{stderr}"
    );
}

#[test]
fn prune_removes_old_backups_but_keeps_history_and_the_last_change_of_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let r = root.to_str().unwrap();
    // Four runs: each forced rotation changes both identities; then one changes only the first.
    for _ in 0..3 {
        assert_eq!(run(&root, &["rotate", "--force"]).0, 0);
    }
    assert_eq!(run(&root, &["rotate", "--force", "--node", "node-00"]).0, 0);
    let runs: Vec<String> = reports(&root)
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 4);
    let backup_files = |id: &str| {
        walkdir::WalkDir::new(root.join(".rekey/runs").join(id).join("backup"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count()
    };
    assert_eq!(backup_files(&runs[0]), 6);

    let before = snapshot(&root);
    let out = rekey()
        .args(["prune", "--keep", "1", "--dry-run", "--root", r])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "would remove the backup of run {} (6 files)",
            runs[0]
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "would keep the backup of run {}: newest run to change node-01/svc-0001",
            runs[2]
        )),
        "{said}"
    );
    assert_eq!(backup_files(&runs[0]), 6, "dry run");

    let out = rekey()
        .args(["prune", "--keep", "1", "--root", r])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!((backup_files(&runs[0]), backup_files(&runs[1])), (0, 0));
    assert_eq!(
        backup_files(&runs[2]),
        6,
        "the last change of node-01/svc-0001 can still be rolled back"
    );
    assert_eq!(snapshot(&root), before, "prune never touches the fleet");
    for id in &runs {
        let run_dir = root.join(".rekey/runs").join(id);
        assert!(
            run_dir.join("journal.jsonl").is_file() && run_dir.join("report.json").is_file(),
            "history stays"
        );
    }
    let audit = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"event\":\"pruned\""))
            .count(),
        2,
        "{audit}"
    );
    assert_eq!(
        rekey()
            .args(["rollback", &runs[2], "--root", r])
            .output()
            .unwrap()
            .status
            .code(),
        Some(3),
        "rolls back what it can: node-00 changed since"
    );

    // A run that went well applies the policy's keep_runs at its end.
    std::fs::write(root.join("rekey.toml"), "version = 1\nkeep_runs = 2\n").unwrap();
    let (code, _, stderr) = run(&root, &["rotate", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("removed the backups of"), "{stderr}");
    let all: Vec<String> = reports(&root)
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    let with_backups = all.iter().filter(|id| backup_files(id) > 0).count();
    assert_eq!(with_backups, 2, "{all:?}");
}

#[test]
fn prune_runs_no_hook_and_keeps_the_backups_of_a_run_whose_hooks_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let ran = dir.path().join("ran");
    let hook = format!("echo x >> {}; exit 1", ran.display());
    assert_eq!(run(&root, &["rotate", "--deploy-hook", &hook]).0, 3);
    assert_eq!(run(&root, &["rotate", "--force", "--no-hooks"]).0, 0);
    let first = reports(&root)[0]["run_id"].as_str().unwrap().to_string();
    for args in [&["--dry-run"][..], &[]] {
        let out = rekey()
            .args(["prune", "--keep", "1", "--root"])
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let said = String::from_utf8_lossy(&out.stdout);
        let kept = if args.is_empty() {
            "kept"
        } else {
            "would keep"
        };
        assert!(
            said.contains(&format!(
                "{kept} the backup of run {first}: its hooks are pending"
            )),
            "{args:?}: {said}"
        );
    }
    let ran = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(ran.lines().count(), 1, "prune ran no hook");
}

fn backup_files_of(root: &Path, id: &str) -> usize {
    walkdir::WalkDir::new(root.join(".rekey/runs").join(id).join("backup"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

#[test]
fn an_identity_removed_from_the_fleet_pins_no_run_and_its_old_keys_go() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    std::fs::write(root.join("rekey.toml"), "version = 1\nkeep_runs = 1\n").unwrap();
    // The first run changes both identities; the second only node-00's.
    assert_eq!(run(&root, &["rotate", "--force"]).0, 0);
    assert_eq!(run(&root, &["rotate", "--force", "--node", "node-00"]).0, 0);
    let first = reports(&root)[0]["run_id"].as_str().unwrap().to_string();
    assert!(
        backup_files_of(&root, &first) > 0,
        "node-01's last change keeps it"
    );
    // node-01 leaves the fleet: nothing is left to roll back to, so its old keys go.
    std::fs::remove_dir_all(root.join("nodes/node-01")).unwrap();
    let (code, _, stderr) = run(&root, &["rotate", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        backup_files_of(&root, &first),
        0,
        "the run that last changed a removed identity is not pinned: {stderr}"
    );
}

#[test]
fn a_reader_gone_early_never_skips_the_pruning_at_the_end_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    std::fs::write(root.join("rekey.toml"), "version = 1\nkeep_runs = 1\n").unwrap();
    assert_eq!(run(&root, &["rotate", "--force"]).0, 0);
    let first = reports(&root)[0]["run_id"].as_str().unwrap().to_string();
    assert!(backup_files_of(&root, &first) > 0);
    // `rekey rotate --force | true`: stdout's reader is gone before the report is printed.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(["rotate", "--force", "--as-of", AS_OF, "--root"])
        .arg(&root)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(reports(&root).len(), 2, "{stderr}");
    assert_eq!(
        backup_files_of(&root, &first),
        0,
        "keep_runs = 1 pruned the first run although stdout was closed: {stderr}"
    );
}
