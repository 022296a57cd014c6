//! Reload hooks through the real binary: what a deploy hook sees, in which order the sources
//! run, that a failed or timed-out hook leaves the rotation in place, exits 3 and runs again
//! next time, and that a hook is never lost to a crash between a batch's commit and its hooks.
//! A pending hook runs again as the configuration says now, never as the journal says (it holds
//! no command line); one whose source or identity is gone is dropped, audited; `hooks list` and
//! `hooks discard` run nothing; a hook leaves no process behind, even one in a new session.

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

    // Still failing: the next run of the same command line runs them first, and exits 3 again.
    let hooks = ["--deploy-hook", &failing, "--deploy-hook", &hanging];
    let (code, stdout, _) = run(
        &root,
        &[&["rotate", "--format", "json"][..], &hooks].concat(),
    );
    assert_eq!(code, 3);
    let again = json(&stdout);
    assert_eq!(again["outcome"], "nothing to do");
    assert_eq!(again["retried_hooks"].as_array().unwrap().len(), 4);
    assert_eq!(lines(&ran).len(), 4, "two identities, twice");

    // Fixed: `rekey hooks retry` with the same hooks runs them once more, and then nothing is
    // pending.
    std::fs::write(&flag, "").unwrap();
    let out = common::rekey()
        .args(["hooks", "retry"])
        .args(hooks)
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
    assert_eq!(lines(&ran).len(), 6);
    let (code, stdout, _) = run(
        &root,
        &[&["rotate", "--format", "json"][..], &hooks].concat(),
    );
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
    // A run that does not give the hook again leaves it pending (the journal holds only its
    // digest); the pipeline's next run, with the same command line, runs it.
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(lines(&ran).is_empty(), "not run without its command line");
    assert!(stderr.contains("stays pending"), "{stderr}");
    let (code, stdout, stderr) = run(
        &root,
        &["rotate", "--format", "json", "--deploy-hook", &hook],
    );
    assert_eq!(code, 0, "{stderr}");
    let mut seen = lines(&ran);
    seen.sort();
    assert_eq!(
        seen,
        ["node-00/svc-0000", "node-01/svc-0001", "node-02/svc-0002"],
        "each once"
    );
    assert_eq!(json(&stdout)["retried_hooks"].as_array().unwrap().len(), 3);
    let (code, _, _) = run(&root, &["rotate", "--deploy-hook", &hook]);
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

/// `rekey hooks ARGS... --root ROOT` (no run date: the hooks commands take none).
fn hooks_cmd(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::rekey()
        .arg("hooks")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().expect("exits with a code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn audit(root: &Path) -> Vec<serde_json::Value> {
    lines(&root.join(".rekey/audit.jsonl"))
        .iter()
        .map(|l| json(l))
        .collect()
}

fn pending(root: &Path) -> Vec<serde_json::Value> {
    let (code, stdout, stderr) = hooks_cmd(root, &["list", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    json(&stdout).as_array().expect("a JSON array").clone()
}

fn policy(root: &Path, text: &str) {
    std::fs::write(root.join("rekey.toml"), format!("version = 1\n{text}")).unwrap();
}

#[test]
fn a_pending_hook_runs_the_reload_as_it_is_now_never_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let log = dir.path().join("log");
    let l = log.display();
    policy(
        &root,
        &format!("[services.svc-0000]\nreload = \"echo old >> {l}; exit 1\"\n"),
    );
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(lines(&log), ["old"]);
    let journal = std::fs::read_to_string(
        std::fs::read_dir(root.join(".rekey/runs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("journal.jsonl"),
    )
    .unwrap();
    assert!(
        !journal.contains("echo old"),
        "the journal names the hook, never its command: {journal}"
    );
    // The reload is fixed (changed) in the policy: the retry runs the new command.
    policy(
        &root,
        &format!("[services.svc-0000]\nreload = \"echo new >> {l}\"\n"),
    );
    let (code, _, stderr) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines(&log), ["old", "new"], "the new reload, once");
    assert!(pending(&root).is_empty());
}

#[test]
fn a_pending_hook_whose_reload_was_removed_is_dropped_with_an_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let log = dir.path().join("log");
    policy(
        &root,
        &format!(
            "[services.svc-0000]\nreload = \"echo ran >> {}; exit 1\"\n",
            log.display()
        ),
    );
    let (code, stdout, _) = run(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 3);
    let run_id = json(&stdout)["run_id"].as_str().unwrap().to_string();
    assert_eq!(pending(&root).len(), 1);
    policy(&root, "");
    let (code, _, stderr) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("dropped"), "{stderr}");
    assert_eq!(lines(&log), ["ran"], "the old command never ran again");
    let dropped: Vec<_> = audit(&root)
        .into_iter()
        .filter(|a| a["event"] == "hook_dropped")
        .collect();
    assert_eq!(dropped.len(), 1, "one audit line");
    assert_eq!(dropped[0]["run_id"], run_id.as_str());
    assert_eq!(dropped[0]["source"], "reload");
    assert_eq!(dropped[0]["node"], "node-00");
    assert_eq!(dropped[0]["service"], "svc-0000");
    assert!(dropped[0]["call"].is_u64());
    assert!(
        dropped[0]["reason"].as_str().unwrap().contains("no reload"),
        "{}",
        dropped[0]
    );
    assert!(pending(&root).is_empty(), "never pending again");
    // Even with the reload back, the dropped call stays dropped.
    policy(
        &root,
        &format!(
            "[services.svc-0000]\nreload = \"echo ran >> {}\"\n",
            log.display()
        ),
    );
    let (code, _, _) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 0);
    assert_eq!(lines(&log), ["ran"]);
}

#[test]
fn a_pending_deploy_hook_whose_identity_was_removed_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let flag = dir.path().join("fixed");
    let ran = dir.path().join("ran");
    executable(
        &root.join("hooks/deploy/reload"),
        &format!(
            "#!/bin/sh\necho $REKEY_NODE >> {}\ntest -f {}\n",
            ran.display(),
            flag.display()
        ),
    );
    let (code, _, _) = run(&root, &["rotate"]);
    assert_eq!(code, 3);
    assert_eq!(pending(&root).len(), 2);
    std::fs::remove_dir_all(root.join("nodes/node-00/svc-0000")).unwrap();
    std::fs::write(&flag, "").unwrap();
    let (code, _, stderr) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 0, "{stderr}");
    let mut seen = lines(&ran);
    seen.sort();
    assert_eq!(
        seen,
        ["node-00", "node-01", "node-01"],
        "only the identity still there ran again"
    );
    assert!(stderr.contains("nodes/node-00/svc-0000"), "{stderr}");
    let dropped: Vec<_> = audit(&root)
        .into_iter()
        .filter(|a| a["event"] == "hook_dropped")
        .collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["node"], "node-00");
    assert_eq!(dropped[0]["source"], "hooks/deploy/reload");
    assert!(pending(&root).is_empty());
}

#[test]
fn a_command_planted_in_a_journal_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let pwned = dir.path().join("pwned");
    let p = pwned.display();
    // A journal as the previous release wrote them (command and shell in each call), planted.
    let planted = root.join(".rekey/runs/20200101T000000.000000Z");
    std::fs::create_dir_all(&planted).unwrap();
    let sha = "0".repeat(64);
    let records = [
        r#"{"op":"start","version":1,"run_id":"20200101T000000.000000Z","command":"rotate","as_of":"2020-01-01T00:00:00Z"}"#.to_string(),
        format!(r#"{{"op":"prepare","batch":0,"identities":[{{"node":"node-00","service":"svc-0000","files":[{{"name":"cert.pem","old_sha256":"{sha}","new_sha256":"{sha}"}}]}}]}}"#),
        format!(r#"{{"op":"hooks","batch":0,"calls":[{{"call":1,"kind":"deploy","node":"node-00","service":"svc-0000","source":"reload","command":"touch {p}-reload","shell":true}},{{"call":2,"kind":"deploy","node":"node-00","service":"svc-0000","source":"hooks/deploy/x","command":"/bin/touch","shell":false}},{{"call":3,"kind":"deploy","node":"node-00","service":"svc-0000","source":"--deploy-hook","command":"touch {p}-cli","shell":true}}]}}"#),
        r#"{"op":"ready","batch":0,"identities":["node-00/svc-0000"]}"#.to_string(),
        r#"{"op":"commit","batch":0}"#.to_string(),
        format!(r#"{{"op":"hooks","calls":[{{"call":4,"kind":"post","source":"--post-hook","command":"touch {p}-post","shell":true}}]}}"#),
        r#"{"op":"end","recovered":false}"#.to_string(),
    ];
    std::fs::write(planted.join("journal.jsonl"), records.join("\n") + "\n").unwrap();
    std::fs::write(planted.join("hooks.pending"), "").unwrap();
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = hooks_cmd(
        &root,
        &["retry", "--deploy-hook", "true", "--post-hook", "true"],
    );
    assert_eq!(code, 3, "two command-line hooks stay pending: {stderr}");
    assert!(stderr.contains("--deploy-hook"), "{stderr}");
    for suffix in ["reload", "cli", "post"] {
        assert!(
            !Path::new(&format!("{p}-{suffix}")).exists(),
            "the planted {suffix} command ran"
        );
    }
    let left: Vec<String> = pending(&root)
        .iter()
        .map(|p| p["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["--deploy-hook", "--post-hook"], "{stderr}");
    let dropped = audit(&root)
        .into_iter()
        .filter(|a| a["event"] == "hook_dropped")
        .count();
    assert_eq!(dropped, 2, "no reload, no hooks/deploy/x: both dropped");
}

#[test]
fn a_command_line_hook_runs_again_only_when_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let flag = dir.path().join("fixed");
    let ran = dir.path().join("ran");
    let hook = format!("echo x >> {}; test -f {}", ran.display(), flag.display());
    let (code, _, _) = run(&root, &["rotate", "--deploy-hook", &hook]);
    assert_eq!(code, 3);
    std::fs::write(&flag, "").unwrap();
    let (code, _, stderr) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 3, "still pending: {stderr}");
    assert!(stderr.contains("--deploy-hook again"), "{stderr}");
    assert_eq!(lines(&ran).len(), 1, "not run without its command line");
    let (code, _, stderr) = hooks_cmd(&root, &["retry", "--deploy-hook", "echo other"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(lines(&ran).len(), 1, "another command is not it");
    let (code, _, stderr) = hooks_cmd(&root, &["retry", "--deploy-hook", &hook]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines(&ran).len(), 2);
    assert!(pending(&root).is_empty());
}

#[test]
fn hooks_list_shows_what_is_pending_and_discard_drops_it_audited_running_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let ran = dir.path().join("ran");
    let hook = format!("echo x >> {}; exit 1", ran.display());
    let (code, stdout, _) = run(
        &root,
        &[
            "rotate",
            "--format",
            "json",
            "--deploy-hook",
            &hook,
            "--post-hook",
            &hook,
        ],
    );
    assert_eq!(code, 3);
    let run_id = json(&stdout)["run_id"].as_str().unwrap().to_string();
    assert_eq!(lines(&ran).len(), 2);
    let list = pending(&root);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["run_id"], run_id.as_str());
    assert_eq!(list[0]["kind"], "deploy");
    assert_eq!(list[0]["source"], "--deploy-hook");
    assert_eq!(list[0]["identity"], "nodes/node-00/svc-0000");
    assert_eq!(list[0]["why"], "failed");
    assert_eq!(list[1]["kind"], "post");
    assert!(list[1]["identity"].is_null());
    let (code, table, _) = hooks_cmd(&root, &["list"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&run_id) && table.contains("nodes/node-00/svc-0000"),
        "{table}"
    );
    let call = list[0]["call"].as_u64().unwrap();
    for bad in [
        format!("{run_id}:999"),
        "20990101T000000.000000Z".to_string(),
    ] {
        let (code, _, stderr) = hooks_cmd(&root, &["discard", &bad]);
        assert_eq!(code, 1, "{bad}: {stderr}");
        assert!(stderr.contains("no "), "{stderr}");
    }
    let (code, _, stderr) = hooks_cmd(&root, &["discard", &format!("{run_id}:{call}")]);
    assert_eq!(code, 0, "{stderr}");
    let list = pending(&root);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "post");
    let discarded: Vec<_> = audit(&root)
        .into_iter()
        .filter(|a| a["event"] == "hook_discarded")
        .collect();
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0]["run_id"], run_id.as_str());
    assert_eq!(discarded[0]["call"], call);
    assert!(discarded[0]["operator"].is_string());
    let (code, _, stderr) = hooks_cmd(&root, &["discard", &run_id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(pending(&root).is_empty());
    assert_eq!(lines(&ran).len(), 2, "list and discard ran nothing");
    assert!(
        !root
            .join(".rekey/runs")
            .join(&run_id)
            .join("hooks.pending")
            .exists()
    );
}

/// Whether a process is still there (a zombie is not: it has ended).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn stray_left(root: &Path, dir: &Path, hook: &str) -> (i32, String, bool) {
    let pidfile = dir.join("pidfile");
    let hook = hook.replace("PIDFILE", pidfile.to_str().unwrap());
    let (code, stdout, stderr) = run(
        root,
        &["rotate", "--format", "json", "--deploy-hook", &hook],
    );
    let mut pid = String::new();
    for _ in 0..100 {
        pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .trim()
            .to_string();
        if !pid.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !pid.is_empty(),
        "the hook started its background process: {stderr}"
    );
    let mut left = alive(&pid);
    for _ in 0..50 {
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = alive(&pid);
    }
    if left {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    }
    (code, stdout, left)
}

#[test]
fn a_hook_killed_at_its_timeout_takes_its_setsid_descendants_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    policy(&root, "hook_timeout_seconds = 1\n");
    let (code, stdout, left) = stray_left(
        &root,
        dir.path(),
        "setsid sh -c 'echo $$ > PIDFILE; exec sleep 300' & sleep 600",
    );
    assert_eq!(code, 3);
    assert_eq!(
        json(&stdout)["identities"][0]["hooks"][0]["status"],
        "timed out"
    );
    assert!(!left, "the setsid'd sleep outlived the hook's timeout");
}

#[test]
fn a_hook_that_ends_leaving_a_setsid_process_behind_has_it_killed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let (code, stdout, left) = stray_left(
        &root,
        dir.path(),
        // It waits for the pid to be written, so that there is a process to look for.
        "setsid sh -c 'echo $$ > PIDFILE; exec sleep 300' & \
         while [ ! -s PIDFILE ]; do sleep 0.05; done",
    );
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(json(&stdout)["identities"][0]["hooks"][0]["status"], "ok");
    assert!(!left, "rekey left a stray process of its hook running");
}

#[test]
fn what_hooks_leave_on_disk_is_private_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"));
    cmd.args([
        "rotate",
        "--deploy-hook",
        "exit 1",
        "--as-of",
        common::AS_OF,
        "--root",
    ])
    .arg(&root);
    // SAFETY: umask only changes this child's file-creation mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let run = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run.join("hooks.pending")), 0o600);
    assert_eq!(mode(&run.join("hooks")), 0o700);
    assert_eq!(mode(&run.join("hooks/1.log")), 0o600);
}

#[test]
fn killing_one_hooks_processes_leaves_another_identitys_hook_running() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let d = dir.path().display();
    // node-00's hook ends at once leaving a setsid'd process, which is killed when it ends;
    // node-01's hook, running in parallel meanwhile, must not be touched and ends on its own.
    let hook = format!(
        "if [ $REKEY_NODE = node-00 ]; then setsid sh -c 'echo $$ > {d}/pid; exec sleep 300' & \
         while [ ! -s {d}/pid ]; do sleep 0.05; done; else sleep 2 && echo done > {d}/other; fi"
    );
    let (code, stdout, stderr) = run(
        &root,
        &[
            "rotate",
            "--jobs",
            "2",
            "--format",
            "json",
            "--deploy-hook",
            &hook,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    for i in 0..2 {
        assert_eq!(
            report["identities"][i]["hooks"][0]["status"], "ok",
            "{stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other")).unwrap(),
        "done\n",
        "the other identity's hook ran to its end"
    );
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let pid = pid.trim();
    let left = alive(pid);
    if left {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    assert!(!left, "node-00's stray was killed");
    assert!(stderr.contains("left 1 process running"), "{stderr}");
}

/// The one run directory whose id is not in `before`.
fn new_run(root: &Path, before: &[String]) -> String {
    let mut runs: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

#[test]
fn a_run_whose_hooks_all_ran_leaves_no_pending_marker_and_one_pending_keeps_it_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    let flag = dir.path().join("fail");
    executable(
        &root.join("hooks/deploy/10-maybe"),
        &format!("#!/bin/sh\n! test -e {}\n", flag.display()),
    );
    executable(&root.join("hooks/post/10-post"), "#!/bin/sh\ntrue\n");
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let first = new_run(&root, &[]);
    let marker = |id: &str| root.join(".rekey/runs").join(id).join("hooks.pending");
    assert!(
        !marker(&first).exists(),
        "every hook ran: nothing is pending, so no marker"
    );
    // A run with a failing hook keeps the marker, 0600, until a later writer has run it.
    std::fs::write(&flag, "").unwrap();
    let (code, _, stderr) = run(&root, &["rotate", "--force"]);
    assert_eq!(code, 3, "{stderr}");
    let second = new_run(&root, std::slice::from_ref(&first));
    let mode = std::fs::metadata(marker(&second))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_file(&flag).unwrap();
    let (code, _, stderr) = hooks_cmd(&root, &["retry"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!marker(&second).exists(), "retried: nothing is pending");
    assert!(pending(&root).is_empty());
}

#[test]
fn the_post_hook_of_a_run_cut_off_after_it_changed_something_runs_in_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 30);
    let deploys = dir.path().join("deploys");
    let posts = dir.path().join("posts");
    executable(
        &root.join("hooks/deploy/10-log"),
        &format!(
            "#!/bin/sh\necho $REKEY_RUN_ID $REKEY_NODE/$REKEY_SERVICE >> {}\n",
            deploys.display()
        ),
    );
    executable(
        &root.join("hooks/post/10-log"),
        &format!(
            "#!/bin/sh\necho $REKEY_RUN_ID $REKEY_DONE $(test -f \"$REKEY_REPORT\" && echo report) >> {}\n",
            posts.display()
        ),
    );
    // Cut off before its batch was ready: it changed nothing, so it has no post hook to run.
    let (code, _, _) = run_env(&root, &["rotate"], &[("REKEY_CRASH_AT", "prepared")]);
    assert_eq!(code, None);
    let undone = new_run(&root, &[]);
    // Cut off between its commit and its hooks: it changed everything.
    let (code, _, stderr) = run_env(&root, &["rotate"], &[("REKEY_CRASH_AT", "committed")]);
    assert_eq!(code, None, "{stderr}");
    let cut = new_run(&root, std::slice::from_ref(&undone));
    assert!(lines(&deploys).is_empty() && lines(&posts).is_empty());
    // The next writer finds nothing to do, and runs what the cut-off run owed: its deploy hooks,
    // then its post hook, as that run's, with the report the replay wrote.
    let (code, stdout, stderr) = run(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let next = new_run(&root, &[undone.clone(), cut.clone()]);
    let mut ran = lines(&deploys);
    ran.sort();
    assert_eq!(
        ran,
        ["node-00/svc-0000", "node-01/svc-0001", "node-02/svc-0002"]
            .map(|id| format!("{cut} {id}"))
    );
    assert_eq!(
        lines(&posts),
        [format!("{cut} 3 report")],
        "once, the cut-off run's"
    );
    let report = json(&stdout);
    let retried = report["retried_hooks"].as_array().unwrap();
    let post: Vec<&serde_json::Value> = retried
        .iter()
        .filter(|h| h["source"] == "hooks/post/10-log")
        .collect();
    assert_eq!(post.len(), 1, "{retried:?}");
    assert_eq!(
        post[0]["run_id"],
        cut.as_str(),
        "the report says whose it is"
    );
    assert_eq!(post[0]["status"], "ok");
    assert_eq!(
        retried.last().unwrap()["source"],
        "hooks/post/10-log",
        "after the deploy hooks"
    );
    for id in [&undone, &cut, &next] {
        let marker = root.join(".rekey/runs").join(id).join("hooks.pending");
        assert!(!marker.exists(), "{id}: nothing is pending");
    }
    // And never again.
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines(&posts).len(), 1);
    assert_eq!(lines(&deploys).len(), 3);
}

/// A post hook announces its run's work done: while a deploy call of its run stays pending
/// (failed again, or not given again), its pending post call waits, untried; once the deploy
/// calls ran, it runs.
#[test]
fn a_pending_post_hook_waits_for_the_pending_deploy_hooks_of_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 80);
    let ok = dir.path().join("ok");
    let log = dir.path().join("posted");
    let deploy = format!("test -e {}", ok.display());
    let post = format!("echo ran >> {}; test -e {}", log.display(), ok.display());
    let (code, _, err) = run(
        &root,
        &["rotate", "--deploy-hook", &deploy, "--post-hook", &post],
    );
    assert_eq!(code, 3, "both hooks fail: {err}");
    let posted = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(posted(), 1);
    // Only the post hook given again: the deploy call stays pending, so the post call waits.
    let (_, _, err) = common::run_unpinned(&root, &["hooks", "retry", "--post-hook", &post]);
    assert_eq!(posted(), 1, "the post hook waited: {err}");
    assert!(
        err.contains("a deploy hook of its run is still pending"),
        "{err}"
    );
    // Both given, the deploy hook fails again: the post call still waits.
    let both = [
        "hooks",
        "retry",
        "--deploy-hook",
        &deploy,
        "--post-hook",
        &post,
    ];
    let _ = common::run_unpinned(&root, &both);
    assert_eq!(posted(), 1);
    // The deploy hook succeeds: then the post hook runs, and nothing is pending.
    std::fs::write(&ok, "").unwrap();
    let (code, _, err) = common::run_unpinned(&root, &both);
    assert_eq!(code, 0, "{err}");
    assert_eq!(posted(), 2, "{err}");
    common::assert_nothing_pending(&root);
}

/// `hooks list` reads the pending calls twice and holds none: its JSON is byte for byte the
/// pretty list serde_json makes of the calls held whole, and its table's columns line up with
/// its header however long the identities' names, as measured by a first pass.
#[test]
fn hooks_list_streams_its_json_and_its_table_aligned_from_a_first_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 40, 30);
    let (code, stdout, _) = hooks_cmd(&root, &["list", "--format", "json"]);
    assert_eq!((code, stdout.as_str()), (0, "[]\n"), "nothing pending");
    let (code, stdout, stderr) = hooks_cmd(&root, &["list"]);
    assert_eq!((code, stdout.as_str()), (0, ""));
    assert!(stderr.contains("no hook is pending"), "{stderr}");
    let (code, _, stderr) = run(
        &root,
        &["rotate", "--deploy-hook", "exit 1", "--post-hook", "exit 1"],
    );
    assert_eq!(code, 3, "{stderr}");
    let (code, stdout, stderr) = hooks_cmd(&root, &["list", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let held = json(&stdout);
    assert_eq!(
        held.as_array().unwrap().len(),
        41,
        "40 deploy calls and the post call"
    );
    assert_eq!(stdout, serde_json::to_string_pretty(&held).unwrap() + "\n");
    let (code, table, stderr) = hooks_cmd(&root, &["list"]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 42, "{table}");
    let column = |row: &str, name: &str| row.find(name);
    let (identity, why) = (
        column(rows[0], "IDENTITY").unwrap(),
        column(rows[0], "WHY").unwrap(),
    );
    for row in &rows[1..] {
        let cells: Vec<usize> = row
            .char_indices()
            .filter(|(i, c)| *c != ' ' && (*i == 0 || row.as_bytes()[i - 1] == b' '))
            .map(|(i, _)| i)
            .collect();
        assert!(
            cells.contains(&identity) && cells.contains(&why),
            "{row}\n{table}"
        );
    }
}
