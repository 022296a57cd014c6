//! Prometheus textfile metrics (docs/design.md §5, `status --format prometheus`, and the
//! policy's `metrics_file`), through the real binary, checked by `promtool check metrics` (the
//! `prometheus` Debian package; .ci/run installs it).

mod common;

use std::path::Path;

use common::*;
use rekey::catalog::every_case;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// Runs `promtool check metrics` on `text`; fails the test with what to install when missing.
fn promtool_check(text: &str) {
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
    // HELP and TYPE for every family; no sample carries a timestamp.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let family = line.split(['{', ' ']).next().unwrap();
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
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
