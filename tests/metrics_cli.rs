//! Prometheus textfile metrics (docs/design.md §5, `status --format prometheus`, and the
//! policy's `metrics_file`), through the real binary, checked by `promtool check metrics` (the
//! `prometheus` Debian package; .ci/run installs it).

mod common;

use std::path::Path;

use common::*;
use rekey::catalog::every_case;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// The samples of one family.
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .collect()
}

fn metrics(root: &Path, extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("rekey.prom");
    let args = [
        &[
            "status",
            "--format",
            "prometheus",
            "-o",
            file.to_str().unwrap(),
        ],
        extra,
    ]
    .concat();
    let (code, stdout, stderr) = run(root, &args);
    assert!(matches!(code, 0 | 3 | 4), "{stderr}");
    assert_eq!(stdout, "", "with -o nothing goes to stdout");
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["rekey.prom"], "no temporary file is left beside it");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter must be able to read it");
    std::fs::read_to_string(file).unwrap()
}

#[test]
fn promtool_accepts_the_metrics_with_one_sample_per_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ids: Vec<_> = (0..6)
        .map(|i| IdentitySpec::new(&format!("n{}", i % 2), &format!("svc{i}"), issued(10 * i)))
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &ids);
    let text = metrics(root, &[]);
    promtool_check(&text);
    assert_eq!(samples(&text, "x509_cert_not_after").len(), 6, "{text}");
    assert_eq!(samples(&text, "x509_cert_not_before").len(), 6);
    assert_eq!(samples(&text, "x509_cert_expired").len(), 6);
    assert_eq!(
        samples(&text, "rekey_token_not_after_timestamp_seconds").len(),
        6
    );
    assert_eq!(
        samples(&text, "rekey_ca_not_after_timestamp_seconds").len(),
        1
    );
    let canonical = std::fs::canonicalize(root).unwrap();
    let first = format!(
        "x509_cert_not_after{{filename=\"cert.pem\",filepath=\"{}/nodes/n0/svc0/cert.pem\",\
         issuer_CN=\"fleet test CA\",node=\"n0\",serial_number=\"",
        canonical.display()
    );
    assert!(
        samples(&text, "x509_cert_not_after")[0].starts_with(&first),
        "{text}"
    );
    assert!(
        text.contains(",service=\"svc0\",subject_CN=\"n0/svc0\"} 1803600000\n"),
        "not_after of n0/svc0 (issued at AS_OF, 90 days): {text}"
    );
    assert!(
        text.contains("rekey_credentials{state=\"due\"} 10\n"),
        "{text}"
    );
    assert!(
        text.contains("rekey_identities{state=\"healthy\"} 0\n"),
        "{text}"
    );
    assert!(!text.contains("rekey_last_run"), "no run yet: {text}");
    assert_eq!(
        samples(&text, "rekey_hooks_pending"),
        ["rekey_hooks_pending 0"]
    );
    assert_eq!(
        samples(&text, "rekey_hooks_failed_total"),
        ["rekey_hooks_failed_total 0"]
    );
    // HELP and TYPE for every family (gauges, but for the one `_total`, a counter); no sample
    // carries a timestamp.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let family = line.split(['{', ' ']).next().unwrap();
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        let kind = if family.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family}"
        );
        let after_labels = line.rsplit_once('}').map_or(line, |(_, rest)| rest);
        assert_eq!(
            after_labels.split_whitespace().count(),
            if line.contains('}') { 1 } else { 2 },
            "{line}"
        );
    }
    assert_eq!(metrics(root, &[]), text, "stable from run to run");
}

#[test]
fn every_case_fleet_metrics_are_valid_and_leave_out_x509_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    let text = metrics(root, &[]);
    promtool_check(&text);
    let (_, json, _) = run(root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let readable_certs = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "cert" && !c["expires_at"].is_null())
        .count();
    assert_eq!(samples(&text, "x509_cert_not_after").len(), readable_certs);
    let expired = samples(&text, "x509_cert_expired");
    assert!(
        expired
            .iter()
            .any(|l| l.contains("/n1/caph/cert.pem") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        expired
            .iter()
            .any(|l| l.contains("/n1/kms/cert.pem") && l.ends_with(" 0")),
        "{text}"
    );
    for secret in secrets(root) {
        assert!(!text.contains(&secret), "a secret leaked into the metrics");
    }

    let without = metrics(root, &["--no-x509-metrics"]);
    promtool_check(&without);
    assert!(!without.contains("x509_cert"), "{without}");
    assert!(
        without.contains("rekey_token_not_after_timestamp_seconds{"),
        "{without}"
    );
}

#[test]
fn every_writing_run_refreshes_the_policys_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ids = [
        IdentitySpec::new("n1", "mocctl", issued(30)),
        IdentitySpec::new("n1", "kms", issued(30)),
    ];
    build(root, &ca_spec(KeyAlg::P256), &ids);
    std::fs::create_dir(root.join("metrics")).unwrap();
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nmetrics_file = \"metrics/rekey.prom\"\n",
    )
    .unwrap();
    let file = root.join("metrics/rekey.prom");
    let (code, _, stderr) = run(root, &["rotate", "--progress", "never"]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&file).expect("rotate wrote the metrics file");
    promtool_check(&text);
    assert!(
        text.contains("rekey_last_run_identities{outcome=\"done\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("rekey_credentials{state=\"fresh\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("rekey_credentials{state=\"healthy\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("rekey_last_run_timestamp_seconds "), "{text}");

    // A rollback is a writing run too: the file now shows the fleet as it was put back.
    let run_id = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let out = rekey()
        .args(["rollback", run_id.to_str().unwrap(), "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check(&text);
    assert!(
        text.contains("rekey_last_run_identities{outcome=\"done\"} 2\n"),
        "{text}"
    );
    // The rollback's run date is the wall clock, so the states it leaves in the file depend on
    // the calendar: what is checked is that the file is the rollback's.
    assert!(text.contains("rekey_last_run_timestamp_seconds "), "{text}");
}

/// A fleet of two identities, both due, with `metrics_file` set to `metrics` in its policy.
fn fleet_with_metrics_file(root: &Path, metrics: &str) {
    let ids = [
        IdentitySpec::new("n1", "mocctl", issued(30)),
        IdentitySpec::new("n1", "kms", issued(30)),
    ];
    build(root, &ca_spec(KeyAlg::P256), &ids);
    std::fs::write(
        root.join("rekey.toml"),
        format!("version = 1\nmetrics_file = {metrics:?}\n"),
    )
    .unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// What a writing command must refuse to start with, as `-o` is refused: the fleet's own files
/// (links and `..` resolved), a link, a named pipe, a directory. Each is left as it was, and
/// nothing at all is written (no `.rekey/`, no lock).
#[test]
fn a_metrics_file_a_writer_may_not_write_stops_it_before_it_starts() {
    type Setup = fn(&Path, &Path);
    let cases: [(&str, &str, Setup, &str); 9] = [
        ("the CA key", "ca/ca.key", |_, _| {}, "is in the fleet"),
        (
            "a deploy hook rekey runs",
            "hooks/deploy/10-reload",
            |root, _| std::fs::create_dir_all(root.join("hooks/deploy")).unwrap(),
            "is in the fleet",
        ),
        (
            "a live certificate reached through ..",
            "metrics/../nodes/n1/mocctl/cert.pem",
            |root, _| std::fs::create_dir(root.join("metrics")).unwrap(),
            "is in the fleet",
        ),
        (
            "the policy itself",
            "rekey.toml",
            |_, _| {},
            "is in the fleet",
        ),
        (
            "the writer lock",
            ".rekey/lock",
            |root, _| std::fs::create_dir(root.join(".rekey")).unwrap(),
            "is in the fleet",
        ),
        (
            "a directory linked into the fleet",
            "textfile/rekey.prom",
            |root, _| {
                std::os::unix::fs::symlink(root.join("nodes/n1/kms"), root.join("textfile"))
                    .unwrap()
            },
            "is in the fleet",
        ),
        (
            "a link to a file elsewhere",
            "rekey.prom",
            |root, elsewhere| {
                std::fs::write(elsewhere.join("victim"), "precious\n").unwrap();
                std::os::unix::fs::symlink(elsewhere.join("victim"), root.join("rekey.prom"))
                    .unwrap();
            },
            "is a symbolic link: metrics_file names a regular file",
        ),
        (
            "a named pipe",
            "rekey.prom",
            |root, _| mkfifo(&root.join("rekey.prom")),
            "is a named pipe: metrics_file names a regular file",
        ),
        (
            "a directory",
            "textfile",
            |root, _| std::fs::create_dir(root.join("textfile")).unwrap(),
            "is a directory: metrics_file names a regular file",
        ),
    ];
    for (name, metrics, setup, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fleet");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        fleet_with_metrics_file(&root, metrics);
        setup(&root, &elsewhere);
        let before = (snapshot(&root), snapshot(&elsewhere));
        let lock = std::fs::symlink_metadata(root.join(".rekey/lock")).is_ok();
        let (code, stdout, stderr) = run(&root, &["rotate", "--progress", "never"]);
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(stderr.contains("metrics_file"), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(
            stderr.contains("refusing to start: nothing was written; fix metrics_file"),
            "{name}: {stderr}"
        );
        assert_eq!(
            (snapshot(&root), snapshot(&elsewhere)),
            before,
            "{name}: changed"
        );
        assert_eq!(
            std::fs::symlink_metadata(root.join(".rekey/lock")).is_ok(),
            lock,
            "{name}: no lock is taken"
        );
        assert!(
            !root.join(".rekey/runs").exists(),
            "{name}: no run was started"
        );
    }
}

/// Every writing command refuses to start; the read commands warn (stderr, status JSON) and go
/// on.
#[test]
fn every_writing_command_refuses_a_bad_metrics_file_and_readers_warn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet_with_metrics_file(&root, "rekey.prom");
    // A run to roll back, made while the policy was sound.
    let (code, _, stderr) = run(&root, &["rotate", "--progress", "never"]);
    assert_eq!(code, 0, "{stderr}");
    let run_id = run_ids(&root).remove(0);
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nmetrics_file = \"ca/ca.key\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let key_before = std::fs::read(root.join("ca/ca.key")).unwrap();
    let key_mode = std::fs::metadata(root.join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode();
    let plan = dir.path().join("plan.toml");
    let (code, _, stderr) = run(&root, &["plan", "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: metrics_file") && stderr.contains("is in the fleet"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&root, &["status", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("rekey: warning: metrics_file"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("metrics_file")),
        "{stdout}"
    );
    let out = rekey()
        .arg("policy")
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: metrics_file"));

    let state = || {
        walkdir::WalkDir::new(root.join(".rekey"))
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                (e.path().to_path_buf(), std::fs::read(e.path()).ok())
            })
            .collect::<Vec<_>>()
    };
    let before = (snapshot(&root), state());
    let writers: [&[&str]; 5] = [
        &["apply", plan.to_str().unwrap()],
        &["rotate", "--force"],
        &["recover", "--all", "--reason", "test", "--yes"],
        &["rollback", &run_id],
        &["hooks", "retry"],
    ];
    for args in writers {
        let mut cmd = rekey();
        cmd.args(args).arg("--root").arg(&root);
        if !matches!(args[0], "rollback" | "hooks") {
            cmd.args(["--as-of", AS_OF]);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to start") && stderr.contains("ca/ca.key"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            (snapshot(&root), state()),
            before,
            "{args:?} wrote something"
        );
    }
    assert_eq!(std::fs::read(root.join("ca/ca.key")).unwrap(), key_before);
    assert_eq!(
        std::fs::metadata(root.join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode(),
        key_mode
    );
}

/// A metrics_file that is fine when the run starts and swapped for a link while it runs (here by
/// a deploy hook) is refused when the metrics are written: a warning, the run unaffected, the
/// link and what it points at left alone.
#[test]
fn a_metrics_file_swapped_for_a_link_during_the_run_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet_with_metrics_file(&root, "rekey.prom");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let swap = format!(
        "ln -sfn {} {}",
        victim.display(),
        root.join("rekey.prom").display()
    );
    let (code, _, stderr) = run(
        &root,
        &["rotate", "--progress", "never", "--post-hook", &swap],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("is a symbolic link") && stderr.contains("the run itself is unaffected"),
        "{stderr}"
    );
    assert!(
        std::fs::symlink_metadata(root.join("rekey.prom"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left as it is"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// A metrics file replaced keeps its mode (one a monitoring group reads, say).
#[test]
fn the_metrics_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet_with_metrics_file(&root, "rekey.prom");
    let file = root.join("rekey.prom");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, stderr) = run(&root, &["rotate", "--progress", "never"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("rekey_last_run")
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

/// Runs `rekey ARGS --root ROOT` (no `--as-of`: `runs` and `hooks` take none).
fn plain(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = rekey().args(args).arg("--root").arg(root).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failed_reload_hook_is_seen_by_status_metrics_runs_and_hooks_list() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 1, 30);
    let (code, stdout, _) = run(
        &root,
        &["rotate", "--format", "json", "--deploy-hook", "exit 1"],
    );
    assert_eq!(code, 3, "{stdout}");
    let run_id = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, table, _) = run(&root, &["status"]);
    assert!(
        table.contains(&format!(
            "pending hooks: 1 call (1 failed or timed out; oldest run {run_id})"
        )),
        "{table}"
    );
    let (_, json, _) = run(&root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let pending = &doc["pending_hooks"];
    assert_eq!(pending["count"], 1, "{pending}");
    assert_eq!(pending["hooks"][0]["run_id"], run_id.as_str());
    assert_eq!(pending["hooks"][0]["identity"], "nodes/node-00/svc-0000");
    assert_eq!(pending["hooks"][0]["source"], "--deploy-hook");
    assert_eq!(pending["hooks"][0]["last_error"], "failed");

    let text = metrics(&root, &[]);
    promtool_check(&text);
    assert_eq!(
        samples(&text, "rekey_hooks_pending"),
        ["rekey_hooks_pending 1"],
        "{text}"
    );
    assert_eq!(
        samples(&text, "rekey_hooks_failed_total"),
        ["rekey_hooks_failed_total 1"]
    );
    assert!(
        text.contains("# TYPE rekey_hooks_failed_total counter\n"),
        "{text}"
    );

    let (code, runs, _) = plain(&root, &["runs"]);
    assert_eq!(code, 0);
    let header = runs.lines().next().unwrap();
    assert!(header.contains(" HOOKS "), "{runs}");
    let line = runs.lines().find(|l| l.starts_with(&run_id)).unwrap();
    assert!(line.contains("1 failed, 1 pending"), "{runs}");
    let (_, runs, _) = plain(&root, &["runs", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[0]["hooks_failed"], 1);
    assert_eq!(runs[0]["hooks_pending"], 1);
    assert_eq!(runs[0]["backups_pruned"], false);

    let (_, list, _) = plain(&root, &["hooks", "list"]);
    assert!(list.contains(&run_id) && list.contains("failed"), "{list}");

    // The hook retried with success: nothing pending, the failure still counted.
    let (code, _, stderr) = plain(&root, &["hooks", "retry", "--deploy-hook", "exit 1"]);
    assert_eq!(code, 3, "{stderr}");
    let text = metrics(&root, &[]);
    assert_eq!(
        samples(&text, "rekey_hooks_pending"),
        ["rekey_hooks_pending 1"]
    );
    let (_, json, _) = run(&root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["pending_hooks"]["count"], 1);
}

/// More pending calls than `status` keeps in memory (it sets them aside as it reads the
/// journals, then writes them back out): the JSON lists each once, in the journal's order, under
/// a count that agrees, and the summary counts them all.
#[test]
fn status_lists_every_pending_hook_once_in_order_however_many() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let n = 300;
    let mut expected = fleet(&root, n, 30);
    expected.sort();
    let (code, _, stderr) = run(&root, &["rotate", "--deploy-hook", "exit 1"]);
    assert_eq!(code, 3, "{stderr}");
    let (_, json, _) = run(&root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let pending = &doc["pending_hooks"];
    assert_eq!(pending["count"], n, "{pending}");
    let identities: Vec<&str> = pending["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["identity"].as_str().unwrap())
        .collect();
    assert_eq!(identities, expected);
    let (_, table, _) = run(&root, &["status"]);
    assert!(
        table.contains(&format!(
            "pending hooks: {n} calls ({n} failed or timed out;"
        )),
        "{table}"
    );
}

#[test]
fn runs_marks_the_runs_whose_backups_were_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2, 30);
    assert_eq!(run(&root, &["rotate"]).0, 0);
    assert_eq!(run(&root, &["rotate", "--force"]).0, 0);
    let (code, _, stderr) = plain(&root, &["prune", "--keep", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, runs, _) = plain(&root, &["runs"]);
    let lines: Vec<&str> = runs.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{runs}");
    assert!(
        lines[0].contains("backups pruned: cannot be rolled back"),
        "{runs}"
    );
    assert!(!lines[1].contains("pruned"), "{runs}");
    let (_, json, _) = plain(&root, &["runs", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json[0]["backups_pruned"], true);
    assert_eq!(json[1]["backups_pruned"], false);
    assert_eq!(json[0]["hooks_pending"], 0);
}
