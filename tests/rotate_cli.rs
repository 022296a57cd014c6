//! `rekey rotate`, `apply`, `recover`, `rollback` and `runs` on real fleets, checked with the
//! `openssl` command line where it can judge independently.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::TimeDelta;
use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;
use x509_parser::prelude::{FromDer, X509Certificate};

fn der_of(pem: &[u8]) -> Vec<u8> {
    rekey::pemblock::single(pem).unwrap().der
}

/// An extension as compared: its OID, whether it is critical, its value's bytes.
type Extension = (String, bool, Vec<u8>);

/// (subject, extensions other than the key identifier, serial, not_before, not_after)
fn cert_facts(pem: &[u8]) -> (Vec<u8>, Vec<Extension>, Vec<u8>, i64, i64) {
    let der = der_of(pem);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let exts = c
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() != "2.5.29.14")
        .map(|e| (e.oid.to_id_string(), e.critical, e.value.to_vec()))
        .collect();
    let v = c.validity();
    (
        c.subject().as_raw().to_vec(),
        exts,
        c.raw_serial().to_vec(),
        v.not_before.timestamp(),
        v.not_after.timestamp(),
    )
}

fn plan_actions(root: &Path) -> BTreeMap<String, String> {
    let (_, json, _) = run(root, &["plan", "--format", "json"]);
    let plan = rekey::plan::Plan::parse(&json).unwrap();
    let mut out = BTreeMap::new();
    for i in plan.identity {
        for (kind, e) in [("cert", i.cert), ("token", i.token)] {
            if let Some(e) = e {
                out.insert(
                    format!("nodes/{}/{}/{kind}", i.node, i.service),
                    format!("{:?}", e.action).to_lowercase(),
                );
            }
        }
    }
    out
}

#[test]
fn rotating_a_fleet_made_by_openssl_passes_openssl_checks() {
    let dir = copy_fixture("openssl-rsa");
    let root = dir.path();
    // Modes to keep: a group-readable token, a world-readable certificate.
    std::fs::set_permissions(
        root.join("nodes/n1/mocctl/token.jwt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("nodes/n1/mocctl/cert.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("nodes/n1/mocctl/key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let actions = plan_actions(root);
    let before = snapshot(root);
    let (code, stdout, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 4, "problems and recover remain: {stdout}{stderr}");
    assert!(
        stdout.contains(" credentials), 0 skipped, 0 failed"),
        "{stdout}"
    );
    let after = snapshot(root);
    let ca = root.join("ca/ca.crt");
    let ca_pub = root.join("ca-pub.pem");
    std::fs::write(
        &ca_pub,
        openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-pubkey"]),
    )
    .unwrap();

    let mut rotated_certs = 0;
    let mut rotated_tokens = 0;
    for (key, action) in &actions {
        let (dir_rel, kind) = key.rsplit_once('/').unwrap();
        let file = if kind == "cert" {
            "cert.pem"
        } else {
            "token.jwt"
        };
        let rel = format!("{dir_rel}/{file}");
        if action != "rotate" {
            assert_eq!(
                before.get(&rel),
                after.get(&rel),
                "{rel} was planned {action} and must not change"
            );
            if kind == "cert" {
                let key_rel = format!("{dir_rel}/key.pem");
                assert_eq!(
                    before.get(&key_rel),
                    after.get(&key_rel),
                    "{key_rel} belongs to a {action} certificate"
                );
            }
            continue;
        }
        let path = root.join(&rel);
        let (old, old_mode) = &before[&rel];
        let (new, new_mode) = &after[&rel];
        assert_ne!(old, new, "{rel} was rotated");
        assert_eq!(old_mode, new_mode, "{rel} keeps its mode");
        if kind == "cert" {
            rotated_certs += 1;
            // openssl judges the new validity itself, at the instants given to it: from the run
            // date to the second before its end, whatever the system clock says.
            let second = TimeDelta::seconds(1);
            for (at, verifies, says) in [
                (as_of() - second, false, "certificate is not yet valid"),
                (as_of(), true, ": OK"),
                (as_of() + days(90) - second, true, ": OK"),
                (as_of() + days(90), false, "certificate has expired"),
            ] {
                let (ok, verdict) = openssl_verify_at(&ca, &path, at);
                assert_eq!(ok, verifies, "{rel} at {at}: {verdict}");
                if verifies {
                    assert!(
                        verdict.trim_end().ends_with(says),
                        "{rel} at {at}: {verdict}"
                    );
                } else {
                    assert!(verdict.contains(says), "{rel} at {at}: {verdict}");
                }
            }
            let dates = openssl(&[
                "x509",
                "-in",
                path.to_str().unwrap(),
                "-noout",
                "-startdate",
                "-enddate",
            ]);
            assert_eq!(
                dates, "notBefore=Nov 28 00:00:00 2026 GMT\nnotAfter=Feb 26 00:00:00 2027 GMT\n",
                "{rel}"
            );
            let (o_subject, o_exts, o_serial, _, _) = cert_facts(old);
            let (n_subject, n_exts, n_serial, nb, na) = cert_facts(new);
            assert_eq!(o_subject, n_subject, "{rel}: same subject bytes");
            assert_eq!(
                o_exts, n_exts,
                "{rel}: same extensions, criticality and values"
            );
            assert_ne!(o_serial, n_serial, "{rel}: new serial");
            assert!(
                n_serial.len() >= 8,
                "{rel}: at least 64 random bits of serial"
            );
            assert_eq!(
                (nb, na),
                (as_of().timestamp(), (as_of() + days(90)).timestamp())
            );
            let key_path = root.join(dir_rel).join("key.pem");
            let cert_pub = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-pubkey"]);
            let key_pub = openssl(&["pkey", "-in", key_path.to_str().unwrap(), "-pubout"]);
            assert_eq!(cert_pub, key_pub, "{rel}: the key matches");
            let (old_key, old_key_mode) = &before[&format!("{dir_rel}/key.pem")];
            let (new_key, new_key_mode) = &after[&format!("{dir_rel}/key.pem")];
            assert_ne!(old_key, new_key, "{rel}: keys = rotate gives a new key");
            assert_eq!(old_key_mode, new_key_mode);
            let label = |pem: &[u8]| rekey::pemblock::single(pem).unwrap().label;
            assert_eq!(
                label(old_key),
                label(new_key),
                "{rel}: the key file keeps its encoding"
            );
            let alg = |pem: &[u8]| rekey::keys::public_from_private_pem(pem).unwrap().alg;
            assert_eq!(
                alg(old_key),
                alg(new_key),
                "{rel}: the same algorithm and size"
            );
        } else {
            rotated_tokens += 1;
            let text = String::from_utf8(new.clone()).unwrap();
            let token = text.trim_end();
            let (signed, sig) = token.rsplit_once('.').unwrap();
            use base64::Engine as _;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap();
            let sig_path = root.join("sig.bin");
            let msg_path = root.join("msg.txt");
            std::fs::write(&sig_path, sig).unwrap();
            std::fs::write(&msg_path, signed).unwrap();
            let verdict = openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                ca_pub.to_str().unwrap(),
                "-signature",
                sig_path.to_str().unwrap(),
                msg_path.to_str().unwrap(),
            ]);
            assert_eq!(verdict.trim(), "Verified OK", "{rel}");
            let payload = signed.split('.').nth(1).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap();
            let sub = dir_rel.trim_start_matches("nodes/");
            assert_eq!(claims["sub"], sub);
            assert_eq!(claims["iss"], "openssl fixture CA");
            assert_eq!(claims["nbf"], as_of().timestamp());
            assert_eq!(claims["iat"], as_of().timestamp());
            assert_eq!(claims["exp"], (as_of() + days(90)).timestamp());
            assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        }
    }
    assert!(
        rotated_certs >= 4 && rotated_tokens >= 6,
        "{rotated_certs} certificates, {rotated_tokens} tokens"
    );
    assert_eq!(
        before["outside/n4-caph.pem"], after["outside/n4-caph.pem"],
        "a symlink's target is never touched"
    );
    assert!(temp_files(root).is_empty());

    // Everything rotated is now fresh; a second rotate the same day changes nothing.
    let states = states(root);
    for (key, action) in &actions {
        if action == "rotate" {
            assert_eq!(
                states[&key.trim_start_matches("nodes/").to_string()].0,
                "fresh",
                "{key}"
            );
        }
    }
    let (code, stdout, _) = run(root, &["rotate"]);
    assert_eq!(code, 4);
    assert!(stdout.contains("(rotate): nothing to do"), "{stdout}");
    let mut again = snapshot(root);
    let mut expected = after.clone();
    for extra in ["ca-pub.pem", "sig.bin", "msg.txt"] {
        again.remove(extra);
        expected.remove(extra);
    }
    assert_eq!(again, expected);
}

fn clean_fleet(root: &Path, n: usize) {
    let specs: Vec<_> = (0..n)
        .map(|i| {
            let mut s = IdentitySpec::new(
                &format!("node-{:02}", i % 7),
                &format!("svc-{i:03}"),
                issued(30),
            );
            s.key_alg = [KeyAlg::P256, KeyAlg::Ed25519, KeyAlg::P384][i % 3];
            s
        })
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &specs);
}

#[test]
fn rotate_exit_codes_lock_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    clean_fleet(root, 12);
    let before = snapshot(root);

    let (code, report, _) = run(root, &["rotate", "--dry-run"]);
    assert_eq!(code, 0, "the run would go well: {report}");
    assert!(report.starts_with("dry run (rotate): 12 done"), "{report}");
    assert_eq!(snapshot(root), before, "--dry-run writes nothing");
    assert!(!root.join(".rekey").exists(), "--dry-run creates no state");

    std::fs::create_dir_all(root.join(".rekey")).unwrap();
    let held = std::fs::File::create(root.join(".rekey/lock")).unwrap();
    held.lock().unwrap();
    let (code, _, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("another rekey is writing"), "{stderr}");
    assert_eq!(snapshot(root), before, "a held lock changes nothing");
    let (code, _, _) = run(root, &["status"]);
    assert_eq!(code, 3, "status never takes the lock");
    drop(held);

    let (code, stdout, _) = run(root, &["rotate", "--format", "json", "--jobs", "2"]);
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["counts"]["done"], 12);
    let run_id = report["run_id"].as_str().unwrap();
    let run_dir = root.join(".rekey/runs").join(run_id);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run_dir.join("backup")), 0o700);
    assert_eq!(mode(&run_dir.join("report.json")), 0o600);
    assert_eq!(run(root, &["status"]).0, 0, "all fresh now");
    assert_eq!(run(root, &["rotate"]).0, 0, "nothing left to do");
}

/// `text` with the line that starts with `prefix` replaced by `line`.
fn with_line(text: &str, prefix: &str, line: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with(prefix) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_follows_the_plan_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    clean_fleet(root, 8);
    let plans = tempfile::tempdir().unwrap();
    let plan_path = plans.path().join("plan.toml");
    assert_eq!(run(root, &["plan", "-o", plan_path.to_str().unwrap()]).0, 3);
    let plan_text = std::fs::read_to_string(&plan_path).unwrap();

    // A file changed since the plan is skipped and reported; the rest are done.
    std::fs::write(root.join("nodes/node-00/svc-000/token.jwt"), "changed\n").unwrap();
    let before = snapshot(root);
    let apply = |plan: &Path| {
        let out = rekey()
            .args(["apply"])
            .arg(plan)
            .args(["--as-of", AS_OF])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let escaping = plan_text.replacen("node = \"node-01\"", "node = \"../../etc\"", 1);
    // Named at the line of the name, not of its `[[identity]]`.
    let escaping_line = 1 + escaping
        .lines()
        .position(|l| l.contains("../../etc"))
        .unwrap();
    let escaping_message = format!("line {escaping_line}: \"../../etc\"/");
    let refusals = [
        (
            "another CA",
            with_line(
                &plan_text,
                "ca_sha256 = ",
                &format!("ca_sha256 = \"{}\"", "0".repeat(64)),
            ),
            "made for another CA",
        ),
        ("escaping name", escaping, escaping_message.as_str()),
        (
            "newer version",
            plan_text.replacen("version = 2", "version = 3", 1),
            "plan version 3 is not supported",
        ),
        (
            "truncated",
            plan_text[..plan_text.len() / 2].to_string(),
            "bad plan",
        ),
    ];
    for (name, text, message) in refusals {
        let path = plans.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = apply(&path);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
    assert_eq!(snapshot(root), before, "refused plans change nothing");

    let (code, stdout, _) = apply(&plan_path);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("7 done (14 credentials), 1 skipped, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("token.jwt changed since the plan"),
        "{stdout}"
    );
    let after = snapshot(root);
    for file in ["cert.pem", "key.pem", "token.jwt"] {
        let rel = format!("nodes/node-00/svc-000/{file}");
        assert_eq!(
            before[&rel], after[&rel],
            "{rel}: a changed identity is left whole"
        );
        let rel = format!("nodes/node-01/svc-001/{file}");
        assert_ne!(before[&rel], after[&rel], "{rel} was rotated");
    }
}

#[test]
fn recover_acts_only_on_the_selection_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let specs = [
        IdentitySpec::new("n1", "kms", issued(95)),
        IdentitySpec::new("n2", "kms", issued(95)),
        IdentitySpec::new("n2", "csi", issued(95)),
        IdentitySpec::new("n3", "mocctl", issued(10)),
    ];
    build(root, &ca_spec(KeyAlg::Ed25519), &specs);
    let before = snapshot(root);
    let (code, _, _) = run(root, &["rotate"]);
    assert_eq!(code, 4, "recover identities make rotate exit 4");
    let rotated = snapshot(root);
    assert_eq!(
        before["nodes/n2/kms/token.jwt"], rotated["nodes/n2/kms/token.jwt"],
        "rotate never revives a token"
    );

    let (code, _, stderr) = run_env(
        root,
        &[
            "recover",
            "--node",
            "n2",
            "--service",
            "kms",
            "--reason",
            "checked with owner",
        ],
        &[],
    )
    .into_code();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("would recover n2/kms") && !stderr.contains("n2/csi"),
        "{stderr}"
    );
    assert_eq!(snapshot(root), rotated, "without --yes nothing is written");

    let (code, stdout, _) = run_env(
        root,
        &[
            "recover",
            "--node",
            "n2",
            "--service",
            "kms",
            "--reason",
            "checked with owner",
            "--operator",
            "alice",
            "--yes",
        ],
        &[],
    )
    .into_code();
    assert_eq!(code, 0, "{stdout}");
    let after = snapshot(root);
    for (rel, value) in &rotated {
        let changed = after[rel] != *value;
        assert_eq!(changed, rel.starts_with("nodes/n2/kms/"), "{rel}");
    }
    let audit = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one line for the request, one for the outcome: {audit}"
    );
    assert_eq!(lines[0]["event"], "requested");
    assert_eq!(lines[0]["reason"], "checked with owner");
    let lines = &lines[1..];
    assert_eq!(lines[0]["event"], "recovered");
    assert_eq!(lines[0]["node"], "n2");
    assert_eq!(lines[0]["service"], "kms");
    assert_eq!(lines[0]["reason"], "checked with owner");
    assert_eq!(lines[0]["operator"], "alice");
    assert_eq!(lines[0]["outcome"], "done");
    assert_eq!(lines[0]["changed"].as_array().unwrap().len(), 3);
    assert_eq!(states(root)["n2/kms/token"].0, "fresh");
    assert_eq!(states(root)["n2/csi/token"].0, "recover");
}

trait IntoCode {
    fn into_code(self) -> (i32, String, String);
}

impl IntoCode for (Option<i32>, String, String) {
    fn into_code(self) -> (i32, String, String) {
        (self.0.expect("not killed"), self.1, self.2)
    }
}

#[test]
fn rolling_back_every_run_newest_first_restores_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut specs = vec![
        IdentitySpec::new("n1", "kms", issued(95)),
        IdentitySpec::new("n1", "mocctl", issued(30)),
    ];
    let mut rsa = IdentitySpec::new("n2", "mocctl", issued(30));
    rsa.key_alg = KeyAlg::Rsa { bits: 2048 };
    specs.push(rsa);
    build(root, &ca_spec(KeyAlg::P256), &specs);
    std::fs::set_permissions(
        root.join("nodes/n1/mocctl/token.jwt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let original = snapshot(root);

    assert_eq!(run(root, &["rotate"]).0, 4);
    assert_eq!(
        run_env(root, &["recover", "--all", "--reason", "r", "--yes"], &[]).0,
        Some(0)
    );
    let ids = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap());
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    assert_eq!(ids.len(), 2);
    assert_ne!(snapshot(root), original);
    for id in ids.iter().rev() {
        let out = rekey()
            .args(["rollback", id, "--root"])
            .arg(root)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(snapshot(root), original, "byte for byte, modes included");

    let out = rekey().args(["runs", "--root"]).arg(root).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("rolled back by"), "{listing}");
    assert_eq!(
        listing.lines().count(),
        5,
        "header, two runs, two rollbacks:\n{listing}"
    );

    // Rolling back a run already rolled back says by which run, and writes nothing.
    let runs_before = std::fs::read_dir(root.join(".rekey/runs")).unwrap().count();
    let out = rekey()
        .args(["rollback", &ids[0], "--root"])
        .arg(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("run {} was already rolled back by run ", ids[0])),
        "{stderr}"
    );
    assert_eq!(snapshot(root), original);
    let runs_after = std::fs::read_dir(root.join(".rekey/runs")).unwrap().count();
    assert_eq!(runs_after, runs_before, "no run started: nothing written");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.is_empty(), "{stdout}");

    // A file changed since a run is left alone by its rollback; the rest are put back.
    assert_eq!(run(root, &["rotate"]).0, 4);
    let rotated = snapshot(root);
    let newest = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .max()
        .unwrap();
    std::fs::write(root.join("nodes/n1/mocctl/token.jwt"), "edited by hand\n").unwrap();
    let out = rekey()
        .args(["rollback", &newest, "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed since run"));
    let now = snapshot(root);
    assert_eq!(now["nodes/n1/mocctl/token.jwt"].0, b"edited by hand\n");
    assert_eq!(
        now["nodes/n1/mocctl/cert.pem"], rotated["nodes/n1/mocctl/cert.pem"],
        "the identity is left whole"
    );
    assert_eq!(
        now["nodes/n2/mocctl/cert.pem"], original["nodes/n2/mocctl/cert.pem"],
        "the rest is put back"
    );
    let out = rekey()
        .args(["rollback", "no-such-run", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// kill -9 at each step of the write protocol; the next writer finishes or undoes the
/// interrupted work, every identity ends wholly old or wholly new, and a rerun completes.
#[test]
fn a_killed_rotate_leaves_every_identity_whole() {
    for step in ["prepared", "staged", "ready", "renaming", "renamed"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        clean_fleet(root, 30);
        let before = snapshot(root);
        let (code, _, stderr) = run_env(root, &["rotate"], &[("REKEY_CRASH_AT", step)]);
        assert_eq!(code, None, "{step}: the process was killed: {stderr}");
        // What a kill while saving the report leaves: a half-written temporary copy.
        for run in std::fs::read_dir(root.join(".rekey/runs")).unwrap() {
            std::fs::write(run.unwrap().path().join(".rekey-tmp-half"), b"{\"ver").unwrap();
        }

        // A writer that finds nothing to do still replays first.
        let (code, _, stderr) = run_env(
            root,
            &["recover", "--all", "--reason", "replay", "--yes"],
            &[],
        );
        assert_eq!(code, Some(0), "{step}: {stderr}");
        assert!(stderr.contains("was interrupted"), "{step}: {stderr}");
        assert!(
            temp_files(root).is_empty(),
            "{step}: {:?}",
            temp_files(root)
        );
        let ids: Vec<String> = (0..30)
            .map(|i| format!("nodes/node-{:02}/svc-{i:03}", i % 7))
            .collect();
        let new_ones = whole(&ids, &before, &snapshot(root), step);
        let expect_new = matches!(step, "ready" | "renaming" | "renamed");
        assert_eq!(new_ones, if expect_new { 30 } else { 0 }, "{step}");

        let (code, _, stderr) = run_env(root, &["rotate"], &[]);
        assert_eq!(code, Some(0), "{step}: {stderr}");
        let states = states(root);
        assert_eq!(states.len(), 60);
        assert!(
            states.values().all(|(s, _)| s == "fresh"),
            "{step}: {states:?}"
        );
        assert!(temp_files(root).is_empty());
        let runs = rekey().args(["runs", "--root"]).arg(root).output().unwrap();
        assert!(
            String::from_utf8_lossy(&runs.stdout).contains("interrupted, then replayed"),
            "{step}"
        );
    }
}

#[test]
fn keys_reuse_keeps_the_key_pair() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rsa = IdentitySpec::new("n1", "mocctl", issued(30));
    rsa.key_alg = KeyAlg::Rsa { bits: 2048 };
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[rsa, IdentitySpec::new("n2", "mocctl", issued(30))],
    );
    std::fs::write(root.join("rekey.toml"), "version = 1\nkeys = \"reuse\"\n").unwrap();
    let before = snapshot(root);
    assert_eq!(run(root, &["rotate"]).0, 0);
    let after = snapshot(root);
    for node in ["n1", "n2"] {
        let cert = format!("nodes/{node}/mocctl/cert.pem");
        let key = format!("nodes/{node}/mocctl/key.pem");
        assert_ne!(before[&cert], after[&cert], "{cert} was reissued");
        assert_eq!(before[&key], after[&key], "{key} is kept");
        let public = |pem: &[u8]| rekey::issue::public_key_of(&der_of(pem)).unwrap();
        assert_eq!(
            public(&before[&cert].0),
            public(&after[&cert].0),
            "{cert} keeps its public key"
        );
    }
}

/// Every output, plan, report, journal, audit line and run listing of a full cycle (plan,
/// rotate, recover, rollback) is free of token text and key material; only the backups hold
/// old secrets, in 0700 directories.
#[test]
fn no_secret_leaks_anywhere_in_a_full_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let specs = [
        IdentitySpec::new("n1", "mocctl", issued(30)),
        IdentitySpec::new("n2", "kms", issued(95)),
    ];
    build(root, &ca_spec(KeyAlg::P256), &specs);
    let mut secrets = secrets(root);
    let mut said = String::new();
    let mut record = |out: std::process::Output| {
        said.push_str(&String::from_utf8_lossy(&out.stdout));
        said.push_str(&String::from_utf8_lossy(&out.stderr));
    };
    let with_root = |args: &[&str]| {
        rekey()
            .args(args)
            .arg("--root")
            .arg(root)
            .args(["--as-of", AS_OF])
            .output()
            .unwrap()
    };
    record(with_root(&["status", "--format", "json"]));
    record(with_root(&["plan", "--format", "json"]));
    record(with_root(&["rotate", "--format", "json"]));
    record(with_root(&[
        "recover",
        "--all",
        "--reason",
        "leak check",
        "--yes",
    ]));
    secrets.extend(common::secrets(root));
    let first = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .min()
        .unwrap();
    record(
        rekey()
            .args(["rollback", &first, "--root"])
            .arg(root)
            .output()
            .unwrap(),
    );
    record(rekey().args(["runs", "--root"]).arg(root).output().unwrap());
    assert!(secrets.len() > 10);
    let mut state = said;
    for entry in walkdir::WalkDir::new(root.join(".rekey")) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if entry.file_type().is_dir() && rel.ends_with("/backup") {
            assert_eq!(
                entry.metadata().unwrap().permissions().mode() & 0o777,
                0o700,
                "{rel}"
            );
        }
        if entry.file_type().is_file() && !rel.contains("/backup/") {
            state.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    for secret in &secrets {
        assert!(!state.contains(secret.as_str()), "a secret leaked");
    }
}
