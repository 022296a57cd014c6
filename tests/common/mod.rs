//! Helpers shared by the command-line tests: fleets built with the library's generator at a
//! pinned instant, and the real `rekey` binary run against them.
#![allow(dead_code)]

pub mod browser;

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use chrono::{DateTime, TimeDelta, Utc};
use rekey::fleet::{self, CaSpec, Generator, IdentitySpec};
use rekey::inspect::Window;
use rekey::keys::KeyAlg;
use rekey::keys::KeyFormat;

pub const AS_OF: &str = "2026-11-28T00:00:00Z";

pub fn as_of() -> DateTime<Utc> {
    AS_OF.parse().expect("AS_OF is RFC 3339")
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

/// A 90-day window issued `ago` days before AS_OF.
pub fn issued(ago: i64) -> Window {
    fleet::window(as_of() - days(ago), 90)
}

pub fn ca_spec(alg: KeyAlg) -> CaSpec {
    CaSpec {
        alg,
        common_name: "fleet test CA".to_string(),
        window: fleet::window(as_of() - days(365), 3650),
        key_format: KeyFormat::Pkcs8,
    }
}

pub fn build(root: &Path, ca: &CaSpec, ids: &[IdentitySpec]) -> Generator {
    fleet::write_fleet(root, ca, ids).expect("the test fleet is written")
}

pub fn rekey() -> Command {
    Command::cargo_bin("rekey").expect("the rekey binary is built")
}

/// Runs a read command with `--root` and the pinned `--as-of`; returns (exit code, stdout, stderr).
pub fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut pinned = args.to_vec();
    pinned.extend(["--as-of", AS_OF]);
    run_unpinned(root, &pinned)
}

/// Runs rekey with `args` and `--root root`, and no `--as-of` unless `args` give one; returns
/// (exit code, stdout, stderr).
pub fn run_unpinned(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = rekey()
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("rekey runs");
    (
        out.status
            .code()
            .expect("rekey exits with a code, not a signal"),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

/// The runs `.rekey/runs` holds, oldest first.
pub fn run_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Cuts from a report's warnings the system clock they quote (a run date so far back that what
/// it issues has expired by now): two runs read the clock a moment apart.
pub fn without_the_clock(report: &mut serde_json::Map<String, serde_json::Value>) {
    let warnings = report
        .get_mut("warnings")
        .and_then(serde_json::Value::as_array_mut);
    for w in warnings.into_iter().flatten() {
        if let Some(text) = w.as_str()
            && let Some(at) = text.find("the system clock's now (")
        {
            *w = serde_json::Value::String(text[..at].to_string());
        }
    }
}

/// Asserts that `rekey hooks list` at `root` lists no pending hook call.
pub fn assert_nothing_pending(root: &Path) {
    let (code, out, err) = run_unpinned(root, &["hooks", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("hooks list prints JSON");
    assert_eq!(listed, serde_json::json!([]), "nothing is pending");
}

/// Installs `hooks/<kind>/<name>` under `root`: a `/bin/sh` script running `body`, mode 0755.
pub fn install_hook(root: &Path, kind: &str, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join("hooks").join(kind).join(name);
    std::fs::create_dir_all(path.parent().expect("a hook has a directory")).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `status --format json` as (node/service/kind) → (state, reason).
pub fn states(root: &Path) -> BTreeMap<String, (String, String)> {
    let (_, stdout, stderr) = run(root, &["status", "--format", "json"]);
    states_in(&stdout, &stderr)
}

/// The (node/service/kind) → (state, reason) of what `status --format json` printed.
pub fn states_in(stdout: &str, stderr: &str) -> BTreeMap<String, (String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    doc["credentials"]
        .as_array()
        .expect("credentials is an array")
        .iter()
        .map(|c| {
            let key = format!(
                "{}/{}/{}",
                c["node"].as_str().unwrap(),
                c["service"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            );
            (
                key,
                (
                    c["state"].as_str().unwrap().to_string(),
                    c["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Every secret in a fleet: each token's text and each private key's base64 lines.
pub fn secrets(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.expect("the fleet is readable");
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if name == "token.jwt" {
            let token = text.trim().to_string();
            found.extend(
                token
                    .split('.')
                    .filter(|p| p.len() >= 16)
                    .map(str::to_string),
            );
            found.push(token);
        } else if name.ends_with(".key") || name == "key.pem" {
            found.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(str::to_string),
            );
        }
    }
    found
}

/// Every file under `root` except rekey's own state: path → (bytes or link target, mode).
pub fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.expect("the fleet is readable");
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with(".rekey") || entry.file_type().is_dir() {
            continue;
        }
        let meta = entry.path().symlink_metadata().unwrap();
        let content = if entry.file_type().is_symlink() {
            std::fs::read_link(entry.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else if !entry.file_type().is_file() || meta.len() > (1 << 20) {
            // FIFOs, sockets and huge files: their kind and size, never their content.
            format!("{:?} of {} bytes", entry.file_type(), meta.len()).into_bytes()
        } else {
            std::fs::read(entry.path()).unwrap()
        };
        files.insert(rel, (content, meta.permissions().mode() & 0o7777));
    }
    files
}

/// A private copy of a checked-in fixture fleet (symbolic links kept as links).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Runs `openssl` with `args`; returns stdout, failing the test on a non-zero exit.
pub fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (see .ci/run)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify` of `cert` against `ca` as at `at` (`-attime`), never at the system clock;
/// returns whether it verified, and what openssl said.
pub fn openssl_verify_at(ca: &Path, cert: &Path, at: DateTime<Utc>) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["verify", "-attime", &at.timestamp().to_string(), "-CAfile"])
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl is installed (see .ci/run)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Whether `faketime` (libfaketime; Debian package `faketime`) is installed. When it is not, says
/// that the calling test is skipped. CI installs it (see .ci/run).
pub fn faketime_installed() -> bool {
    match std::process::Command::new("faketime")
        .arg("--version")
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: faketime not installed (apt-get install faketime)");
            false
        }
        _ => true,
    }
}

/// The real `rekey` binary under a wall clock that reads `clock` as it starts and runs on from
/// there (libfaketime; the monotonic clock is left alone). A faketime the test itself runs under
/// (CI's second pass) is dropped first, so that the two do not stack.
pub fn rekey_at(clock: DateTime<Utc>) -> std::process::Command {
    let mut cmd = std::process::Command::new("faketime");
    cmd.args(["-f", &clock.format("@%Y-%m-%d %H:%M:%S").to_string()])
        .arg(assert_cmd::cargo::cargo_bin("rekey"))
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .env_remove("FAKETIME_SHARED")
        .env("DONT_FAKE_MONOTONIC", "1")
        .env("TZ", "UTC"); // faketime reads `clock` as local time
    cmd
}

/// Runs `cmd`; returns (exit code, stdout, stderr).
pub fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("the command runs");
    (
        out.status.code().expect("exits with a code, not a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command with `--root` and the pinned `--as-of`, plus `env`; returns (code, stdout, stderr).
/// The code is `None` when the process was killed.
pub fn run_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = rekey()
        .args(args)
        .arg("--root")
        .arg(root)
        .args(["--as-of", AS_OF])
        .envs(env.iter().copied())
        .output()
        .expect("rekey runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Paths of leftover temporary files anywhere under `root`.
pub fn temp_files(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(".rekey-new.")
                || e.file_name().to_string_lossy().starts_with(".rekey-tmp-")
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

pub const FILES: [&str; 3] = ["cert.pem", "key.pem", "token.jwt"];

/// A fleet of `n` plain identities on 20 nodes, issued `ago` days before [`AS_OF`]; returns
/// their `nodes/<node>/<service>` paths.
pub fn fleet(root: &Path, n: usize, ago: i64) -> Vec<String> {
    fleet_by(root, n, |_| ago)
}

/// As [`fleet`], the `i`th identity issued `ago_of(i)` days ago.
pub fn fleet_by(root: &Path, n: usize, ago_of: impl Fn(usize) -> i64) -> Vec<String> {
    let specs: Vec<_> = (0..n)
        .map(|i| {
            IdentitySpec::new(
                &format!("node-{:02}", i % 20),
                &format!("svc-{i:04}"),
                issued(ago_of(i)),
            )
        })
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &specs);
    specs
        .iter()
        .map(|s| format!("nodes/{}/{}", s.node, s.service))
        .collect()
}

/// `cp -a from to`, replacing `to`.
pub fn copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Every identity is wholly `old` or wholly `new` (differs in all three files); returns how
/// many are new.
pub fn whole(
    ids: &[String],
    old: &BTreeMap<String, (Vec<u8>, u32)>,
    now: &BTreeMap<String, (Vec<u8>, u32)>,
    what: &str,
) -> usize {
    let mut new = 0;
    for id in ids {
        let changed: Vec<bool> = FILES
            .iter()
            .map(|f| old[&format!("{id}/{f}")] != now[&format!("{id}/{f}")])
            .collect();
        assert!(
            changed.iter().all(|c| *c) || changed.iter().all(|c| !*c),
            "{what}: {id} is torn: {changed:?}"
        );
        new += usize::from(changed[0]);
    }
    new
}

/// Every backup of every run holds the bytes its report says the file had.
pub fn backups_intact(root: &Path, what: &str) {
    let runs = root.join(".rekey/runs");
    let Ok(entries) = std::fs::read_dir(&runs) else {
        return; // killed before the first run began
    };
    for run in entries {
        let run = run.unwrap().path();
        if !run.join("report.json").exists() {
            // Killed before its journal began: nothing can have been staged.
            let staged = walkdir::WalkDir::new(run.join("backup"))
                .into_iter()
                .filter_map(Result::ok)
                .any(|e| e.file_type().is_file());
            assert!(
                !staged,
                "{what}: {} has backups but no report",
                run.display()
            );
            continue;
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap())
                .unwrap();
        assert_report_valid(&report, what);
        for i in report["identities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["outcome"] == "done")
        {
            for f in i["files"].as_array().unwrap() {
                let saved = run
                    .join("backup")
                    .join(i["node"].as_str().unwrap())
                    .join(i["service"].as_str().unwrap())
                    .join(f["name"].as_str().unwrap());
                let bytes = std::fs::read(&saved)
                    .unwrap_or_else(|e| panic!("{what}: {}: {e}", saved.display()));
                use sha2::Digest;
                assert_eq!(
                    hex::encode(sha2::Sha256::digest(bytes)),
                    f["old_sha256"].as_str().unwrap(),
                    "{what}: {}",
                    saved.display()
                );
            }
        }
    }
}

/// Checks `report` (a run's `report.json` or `--format json`) against `docs/report.schema.json`.
pub fn assert_report_valid(report: &serde_json::Value, what: &str) {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).expect("the report schema is a valid schema")
    });
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: report does not match the schema: {errors:#?}\n{report:#}"
    );
}

/// Every run's report under `root`, oldest first, each checked against the schema.
pub fn reports(root: &Path) -> Vec<serde_json::Value> {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join(".rekey/runs"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| std::fs::read(d.join("report.json")).ok())
        .map(|bytes| {
            let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_report_valid(&report, "report.json");
            report
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`; fails the test with what to install when missing.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed to check the metrics ({e}): apt-get install prometheus \
             (.ci/run installs it)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `rekey args --root root` until it reaches the write protocol's `step` (the crash
/// points' `REKEY_PAUSE_AT`), lets `during` act on the fleet there, then lets it finish;
/// returns (code, stdout, stderr).
pub fn paused_at(
    root: &Path,
    step: &str,
    args: &[&str],
    during: impl FnOnce(),
) -> (i32, String, String) {
    let (code, stdout, stderr) = paused_at_with(root, step, args, &[], during);
    (code.expect("rekey exits with a code"), stdout, stderr)
}

/// As [`paused_at`], with `env` set (a crash point, a batch size); the code is `None` when a
/// signal ended it (`REKEY_CRASH_AT`).
pub fn paused_at_with(
    root: &Path,
    step: &str,
    args: &[&str],
    env: &[(&str, &str)],
    during: impl FnOnce(),
) -> (Option<i32>, String, String) {
    paused_at_pid(root, step, args, env, |_| during())
}

/// [`paused_at_with`], `during` given the paused process's id (to signal it, say).
pub fn paused_at_pid(
    root: &Path,
    step: &str,
    args: &[&str],
    env: &[(&str, &str)],
    during: impl FnOnce(u32),
) -> (Option<i32>, String, String) {
    let pause = root.parent().unwrap().join("paused");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(args)
        .arg("--root")
        .arg(root)
        .envs(env.iter().copied())
        .env("REKEY_PAUSE_AT", step)
        .env("REKEY_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pause.exists() {
        assert!(
            std::time::Instant::now() < until,
            "{args:?} never reached {step}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    during(child.id());
    std::fs::remove_file(&pause).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
