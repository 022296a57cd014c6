//! `rekey plan` and `rekey status` as pipelines use them: deterministic bytes, the same actions in
//! TOML and JSON, no secret anywhere, and the documented exit codes for fatal and usage errors.

mod common;

use common::*;
use rekey::fleet::{Flaw, IdentitySpec};
use rekey::keys::KeyAlg;
use rekey::plan::Plan;

fn mixed_fleet(root: &std::path::Path) {
    let mut specs = Vec::new();
    for n in 1..=4 {
        let node = format!("node-{n:02}");
        specs.push(IdentitySpec::new(&node, "mocctl", issued(30)));
        specs.push(IdentitySpec::new(&node, "kms", issued(80)));
        specs.push(IdentitySpec::new(&node, "kva", issued(93)));
        let mut bad = IdentitySpec::new(&node, "csi", issued(10));
        bad.flaw = Some(Flaw::TokenForged);
        specs.push(bad);
    }
    build(root, &ca_spec(KeyAlg::P256), &specs);
}

#[test]
fn the_plan_is_deterministic_and_toml_and_json_agree() {
    let dir = tempfile::tempdir().unwrap();
    mixed_fleet(dir.path());
    let (code, toml_a, summary) = run(dir.path(), &["plan"]);
    assert_eq!(code, 4);
    let (_, toml_b, _) = run(dir.path(), &["plan"]);
    assert_eq!(toml_a, toml_b, "same fleet and instant, same bytes");
    let (_, json, _) = run(dir.path(), &["plan", "--format", "json"]);
    let from_toml = Plan::parse(&toml_a).expect("the TOML plan parses");
    let from_json = Plan::parse(&json).expect("the JSON plan parses");
    assert_eq!(from_toml, from_json);
    assert_eq!(
        from_toml.to_toml(),
        toml_a,
        "rendering the parsed plan gives the same bytes"
    );

    assert_eq!(from_toml.identity.len(), 16);
    let names: Vec<_> = from_toml
        .identity
        .iter()
        .map(|i| format!("{}/{}", i.node, i.service))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "identities are sorted by (node, service)");
    assert_eq!(from_toml.as_of, AS_OF);
    assert_eq!(from_toml.validity_days, 90);

    let kva = &from_toml.identity[2];
    assert_eq!(
        (kva.node.as_str(), kva.service.as_str()),
        ("node-01", "kva")
    );
    let cert = kva.cert.as_ref().unwrap();
    assert_eq!(cert.action, rekey::classify::Action::Recover);
    assert_eq!(cert.new_not_after.as_deref(), Some("2027-02-26T00:00:00Z"));
    let digest = hex::encode(sha2_digest(
        &std::fs::read(dir.path().join("nodes/node-01/kva/cert.pem")).unwrap(),
    ));
    assert_eq!(
        cert.sha256.as_deref(),
        Some(digest.as_str()),
        "sha256 is the file as planned"
    );

    assert!(
        summary.contains("16 identities, 32 credentials: 16 rotate, 0 keep, 8 recover, 8 skip"),
        "{summary}"
    );
    assert!(
        summary.contains("nodes/node-02/csi: token.jwt signature does not verify"),
        "{summary}"
    );
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn plan_to_a_file_writes_it_whole_and_nothing_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    mixed_fleet(dir.path());
    let out = dir.path().join("plan.toml");
    let (code, stdout, _) = run(dir.path(), &["plan", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 4);
    assert!(stdout.is_empty());
    let (_, expected, _) = run(dir.path(), &["plan"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
}

#[test]
fn no_secret_appears_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    mixed_fleet(dir.path());
    let secrets = secrets(dir.path());
    assert!(
        secrets.len() > 40,
        "the fleet has tokens and keys to look for"
    );
    let mut outputs = Vec::new();
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["plan"],
        &["plan", "--format", "json"],
    ] {
        let (_, stdout, stderr) = run(dir.path(), args);
        outputs.push(stdout);
        outputs.push(stderr);
    }
    for output in &outputs {
        for secret in &secrets {
            assert!(
                !output.contains(secret.as_str()),
                "a secret leaked into:\n{output}"
            );
        }
    }
}

#[test]
fn an_unusable_root_or_ca_is_fatal() {
    let missing = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&missing.path().join("nope"), &["status"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("failed to open fleet root"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[IdentitySpec::new("n1", "mocctl", issued(30))],
    );
    let other = rekey::fleet::Generator::new(&ca_spec(KeyAlg::P256)).unwrap();
    let key_path = root.join("ca/ca.key");
    let real_key = std::fs::read(&key_path).unwrap();

    // A CA key for another certificate: the read side never reads the key; writing refuses.
    let elsewhere = tempfile::tempdir().unwrap();
    other.write_ca(elsewhere.path()).unwrap();
    std::fs::copy(elsewhere.path().join("ca/ca.key"), &key_path).unwrap();
    let (code, _, stderr) = run(root, &["plan"]);
    assert_eq!(code, 3, "{stderr}");
    let (code, _, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ca.key does not belong to ca.crt"),
        "{stderr}"
    );
    std::fs::write(&key_path, &real_key).unwrap();

    // A leaf certificate in place of the CA.
    let ca_path = root.join("ca/ca.crt");
    let real_ca = std::fs::read(&ca_path).unwrap();
    std::fs::copy(root.join("nodes/n1/mocctl/cert.pem"), &ca_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let (code, _, stderr) = run(root, &["status"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ca.crt is not a CA certificate"),
        "{stderr}"
    );

    // Without its key the CA still judges the fleet (read-only).
    std::fs::write(&ca_path, &real_ca).unwrap();
    let (code, stdout, _) = run(root, &["status"]);
    assert_eq!(code, 3);
    assert!(stdout.contains("key absent: read-only"), "{stdout}");

    // A policy with an unknown field.
    std::fs::write(root.join("rekey.toml"), "version = 1\nvalidty_days = 30\n").unwrap();
    let (code, _, stderr) = run(root, &["status"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("rekey.toml") && stderr.contains("validty_days"),
        "{stderr}"
    );
}

#[test]
fn a_policy_file_changes_the_classification() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[IdentitySpec::new("n1", "mocctl", issued(30))],
    );
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nvalidity_days = 30\n[services.mocctl]\nself_renews_cert = true\nself_rotates_token = true\n",
    )
    .unwrap();
    let got = states(root);
    assert_eq!(got["n1/mocctl/cert"].0, "healthy");
    assert_eq!(got["n1/mocctl/token"].0, "healthy");
    let (_, plan, _) = run(root, &["plan"]);
    assert!(plan.contains("validity_days = 30"), "{plan}");
}

#[test]
fn a_ca_expiring_within_the_validity_caps_it_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = rekey::fleet::window(as_of() - days(300), 340);
    build(root, &ca, &[IdentitySpec::new("n1", "mocctl", issued(30))]);
    let (_, stdout, _) = run(root, &["status"]);
    assert!(
        stdout.contains("new validity is capped at its expiry"),
        "{stdout}"
    );
    let (_, plan, stderr) = run(root, &["plan"]);
    assert!(
        plan.contains("new_not_after = \"2027-01-07T00:00:00Z\""),
        "{plan}"
    );
    assert!(
        plan.contains("capped at CA expiry 2027-01-07T00:00:00Z"),
        "{plan}"
    );
    assert!(stderr.contains("warning: CA"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["status", "--as-of", "yesterday"][..],
        &["plan", "--format", "yaml"],
        &["status", "--bogus"],
        &["frobnicate"],
    ] {
        let out = rekey()
            .args(args)
            .arg("--root")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    mixed_fleet(dir.path());
    let bin = assert_cmd::cargo::cargo_bin("rekey");
    let script = format!(
        "'{}' status --root '{}' --as-of {AS_OF} | (exec 0<&-; sleep 0.5); exit ${{PIPESTATUS[0]}}",
        bin.display(),
        dir.path().display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "", "a closed pipe is not worth a message");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn apply_records_and_prints_the_digest_of_the_plan_file_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    mixed_fleet(&root);
    let hex = |bytes: &[u8]| {
        sha2_digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let plan = dir.path().join("plan.toml");
    run(&root, &["plan", "-o", plan.to_str().unwrap()]);
    let want = hex(&std::fs::read(&plan).unwrap());
    let (code, stdout, stderr) = run(
        &root,
        &["apply", plan.to_str().unwrap(), "--format", "json"],
    );
    assert!(matches!(code, 0 | 4), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["plan_file_sha256"], want.as_str());
    assert_report_valid(&report, "apply");
    let saved = reports(&root);
    assert_eq!(saved.last().unwrap()["plan_file_sha256"], want.as_str());

    // The table after a run says it too.
    run(
        &root,
        &[
            "plan",
            "--as-of",
            "2026-11-28T01:00:00Z",
            "-o",
            plan.to_str().unwrap(),
        ],
    );
    let want = hex(&std::fs::read(&plan).unwrap());
    let out = rekey()
        .args([
            "apply",
            plan.to_str().unwrap(),
            "--as-of",
            "2026-11-28T01:00:00Z",
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&format!("plan file sha256: {want}")),
        "{printed}"
    );
}
