//! Reload hooks through the real binary: what a deploy hook sees, in which order the sources
//! run, that a failed or timed-out hook leaves the rotation in place, exits 3 and runs again
//! next time, and that a hook is never lost to a crash between a batch's commit and its hooks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{assert_report_valid, fleet, reports, run, run_env, snapshot};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_deploy_hook_sees_its_identity_with_the_new_files_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let ids = fleet(&root, 2, 30);
    let log = dir.path().join("hooks.log");
    let l = log.to_str().unwrap();
    // The policy's reload, then --deploy-hook, then hooks/deploy/ in byte order.
    std::fs::write(
        root.join("rekey.toml"),
        format!(
            "version = 1\n[services.svc-0000]\nreload = \"echo reload $REKEY_SERVICE >> {l}\"\n"
        ),
    )
    .unwrap();
    executable(
        &root.join("hooks/deploy/20-second"),
        &format!("#!/bin/sh\necho second $REKEY_NODE >> {l}\n"),
    );
    executable(
        &root.join("hooks/deploy/10-first"),
        &format!("#!/bin/sh\necho first $REKEY_NODE >> {l}\n"),
    );
    executable(
        &root.join("hooks/post/50-post"),
        &format!(
            "#!/bin/sh\necho post $REKEY_DONE $(test -f \"$REKEY_REPORT\" && echo report) >> {l}\n"
        ),
    );
    let env_file = dir.path().join("env");
    let record = format!(
        "echo \"$REKEY_RUN_ID|$REKEY_NODE|$REKEY_SERVICE|$REKEY_DIR|$REKEY_CERT|$REKEY_KEY|$REKEY_TOKEN|$REKEY_NOT_AFTER|$(pwd)|$(sha256sum < cert.pem | cut -c1-64)\" >> {}",
        env_file.display()
    );
    let (code, stdout, stderr) = run(
        &root,
        &["rotate", "--format", "json", "--deploy-hook", &record],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_report_valid(&report, "rotate with hooks");
    let run_id = report["run_id"].as_str().unwrap();

    let mut seen = lines(&env_file);
    seen.sort_by_key(|l| l.split('|').nth(1).unwrap_or_default().to_string());
    assert_eq!(seen.len(), 2, "once per rotated identity: {seen:?}");
    for (id, line) in ids.iter().zip(&seen) {
        let f: Vec<&str> = line.split('|').collect();
        let dir = root.canonicalize().unwrap().join(id);
        let d = dir.to_str().unwrap();
        let (node, service) = id.trim_start_matches("nodes/").split_once('/').unwrap();
        assert_eq!(
            f[..9],
            [
                run_id,
                node,
                service,
                d,
                &format!("{d}/cert.pem"),
                &format!("{d}/key.pem"),
                &format!("{d}/token.jwt"),
                "2027-02-26T00:00:00Z",
                d
            ]
        );
        let now = sha256(&std::fs::read(dir.join("cert.pem")).unwrap());
        assert_eq!(f[9], now, "the hook saw the new certificate in place");
        let done = report["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["dir"] == *id)
            .unwrap();
        let new = done["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "cert.pem")
            .unwrap();
        assert_eq!(new["new_sha256"], now);
    }
    // Identities' hooks run in parallel; each identity's in source order; the post hook last.
    let order = lines(&log);
    let of = |node: &str, service: &str| -> Vec<&String> {
        order
            .iter()
            .filter(|l| l.ends_with(node) || l.ends_with(service))
            .collect()
    };
    assert_eq!(
        of("node-00", "svc-0000"),
        ["reload svc-0000", "first node-00", "second node-00"]
    );
    assert_eq!(
        of("node-01", "svc-0001"),
        ["first node-01", "second node-01"]
    );
    assert_eq!(
        order.last().map(String::as_str),
        Some("post 2 report"),
        "{order:?}"
    );
    assert_eq!(order.len(), 6, "the post hook once: {order:?}");
    let first = &report["identities"][0]["hooks"];
    let sources: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "reload",
            "--deploy-hook",
            "hooks/deploy/10-first",
            "hooks/deploy/20-second"
        ]
    );
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "ok")
    );
    assert_eq!(report["post_hooks"][0]["status"], "ok");
    let log_file = root.join(first[0]["log"].as_str().unwrap());
    let mode = std::fs::metadata(&log_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "hook output kept privately");

    // --no-hooks runs none and says so.
    std::fs::remove_file(&log).unwrap();
    let (code, stdout, _) = run(
        &root,
        &["rotate", "--force", "--no-hooks", "--format", "json"],
    );
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["hooks_skipped"], true);
    assert!(!log.exists(), "no hook ran");
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_failed_or_timed_out_hook_keeps_the_rotation_exits_3_and_runs_again_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let flag = dir.path().join("fixed");
    let ran = dir.path().join("ran");
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nhook_timeout_seconds = 1\n",
    )
    .unwrap();
    // Fails until the flag exists; and one that hangs (with a child) until killed.
    let failing = format!(
        "echo $REKEY_NODE >> {}; test -f {}",
        ran.display(),
        flag.display()
    );
    let hanging = format!("test -f {} || (sleep 30 & sleep 30)", flag.display());
    let before = snapshot(&root);
    let started = std::time::Instant::now();
    let (code, stdout, _) = run(
        &root,
        &[
            "rotate",
            "--format",
            "json",
            "--deploy-hook",
            &failing,
            "--deploy-hook",
            &hanging,
        ],
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "the timeout killed the whole group"
    );
    assert_eq!(code, 3, "{stdout}");
    let report = json(&stdout);
    assert_report_valid(&report, "failed hooks");
    assert_eq!(report["counts"]["done"], 2, "the rotation stays in place");
    assert_eq!(report["counts"]["hooks_failed"], 4);
    let hooks = report["identities"][0]["hooks"].as_array().unwrap();
    assert_eq!(
        (hooks[0]["status"].as_str(), hooks[0]["exit_code"].as_i64()),
        (Some("failed"), Some(1))
    );
    assert_eq!(hooks[1]["status"], "timed out");
    assert_ne!(
        snapshot(&root)["nodes/node-00/svc-0000/cert.pem"],
        before["nodes/node-00/svc-0000/cert.pem"]
    );

    // Still failing: the next run runs them first, and exits 3 again.
    let (code, stdout, _) = run(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 3);
    let again = json(&stdout);
    assert_eq!(again["outcome"], "nothing to do");
    assert_eq!(again["retried_hooks"].as_array().unwrap().len(), 4);
    assert_eq!(lines(&ran).len(), 4, "two identities, twice");

    // Fixed: `rekey hooks retry` runs them once more, and then nothing is pending.
    std::fs::write(&flag, "").unwrap();
    let out = common::rekey()
        .args(["hooks", "retry", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&ran).len(), 6);
    let (code, stdout, _) = run(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 0);
    assert!(
        json(&stdout).get("retried_hooks").is_none(),
        "nothing pending any more"
    );
    assert_eq!(lines(&ran).len(), 6);
    for r in reports(&root) {
        assert_report_valid(&r, "saved");
    }
}

#[test]
fn a_hook_cut_off_by_a_crash_after_its_batch_committed_runs_exactly_once_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 30);
    let ran = dir.path().join("ran");
    let hook = format!("echo $REKEY_NODE/$REKEY_SERVICE >> {}", ran.display());
    let (code, _, _) = run_env(
        &root,
        &["rotate", "--deploy-hook", &hook],
        &[("REKEY_CRASH_AT", "committed")],
    );
    assert_eq!(code, None, "killed between the commit and the hooks");
    assert!(lines(&ran).is_empty());
    // The next run does not know the hook from its command line: the journal does.
    let (code, stdout, stderr) = run(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let mut seen = lines(&ran);
    seen.sort();
    assert_eq!(
        seen,
        ["node-00/svc-0000", "node-01/svc-0001", "node-02/svc-0002"],
        "each once"
    );
    assert_eq!(json(&stdout)["retried_hooks"].as_array().unwrap().len(), 3);
    let (code, _, _) = run(&root, &["rotate"]);
    assert_eq!(code, 0);
    assert_eq!(lines(&ran).len(), 3, "and never again");
}

#[test]
fn rollback_runs_the_deploy_hooks_of_what_it_restored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    assert_eq!(run(&root, &["rotate", "--no-hooks"]).0, 0);
    let id = reports(&root)[0]["run_id"].as_str().unwrap().to_string();
    let ran = dir.path().join("ran");
    let out = common::rekey()
        .args(["rollback", &id, "--format", "json", "--deploy-hook"])
        .arg(format!("echo $REKEY_SERVICE >> {}", ran.display()))
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_report_valid(&json(&String::from_utf8_lossy(&out.stdout)), "rollback");
    let mut ran = lines(&ran);
    ran.sort(); // identities' hooks run in parallel
    assert_eq!(ran, ["svc-0000", "svc-0001"]);
}

#[test]
fn a_hook_that_cannot_run_or_floods_its_output_is_named_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    std::fs::create_dir_all(root.join("hooks/deploy")).unwrap();
    std::fs::write(root.join("hooks/deploy/not-executable"), "#!/bin/sh\n").unwrap();
    let flood = "head -c 5000000 /dev/zero | tr '\\0' x";
    let (code, stdout, _) = run(
        &root,
        &[
            "rotate",
            "--format",
            "json",
            "--deploy-hook",
            flood,
            "--deploy-hook",
            "no-such-command-anywhere",
        ],
    );
    assert_eq!(code, 3);
    let report = json(&stdout);
    let hooks = report["identities"][0]["hooks"].as_array().unwrap();
    assert_eq!(hooks[0]["status"], "ok");
    let kept = std::fs::metadata(root.join(hooks[0]["log"].as_str().unwrap()))
        .unwrap()
        .len();
    assert_eq!(kept, 64 * 1024, "output capped at 64 KiB");
    assert_eq!(
        (hooks[1]["status"].as_str(), hooks[1]["exit_code"].as_i64()),
        (Some("failed"), Some(127))
    );
    let log = std::fs::read_to_string(root.join(hooks[1]["log"].as_str().unwrap())).unwrap();
    assert!(log.contains("not found"), "{log}");
    assert_eq!(hooks[2]["status"], "failed");
    assert!(
        hooks[2]["detail"]
            .as_str()
            .unwrap()
            .contains("hooks/deploy/not-executable is not executable"),
        "{}",
        hooks[2]
    );
}
