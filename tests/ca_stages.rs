//! The stages of a CA rotation through the binary (`rekey ca begin`, `switch`, `finish`,
//! `abort`), on a fleet whose CA ends in 60 days and whose every identity keeps a trust file
//! `ca.pem`: after each stage every certificate verifies (openssl) against its own `ca.pem` and
//! against `ca/bundle.pem`, every token with the key of the CA its `kid` names; after `finish`
//! every credential is the new CA's for a full 90 days, the bundle holds the new CA alone, and
//! no file under the root holds the old CA's private key.

mod ca_common;
mod common;

use ca_common::*;
use common::*;

#[test]
fn begin_switch_rotate_finish_keeps_every_identity_trusted_and_ends_on_the_new_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    every_identity_trusted(root, "before");
    let old_cert = std::fs::read(root.join("ca/ca.crt")).unwrap();
    let old_key = std::fs::read(root.join("ca/ca.key")).unwrap();

    let (code, stdout, stderr) = run(root, &["ca", "begin"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(root.join("ca/next/ca.crt").is_file());
    assert_eq!(certificates(&root.join("ca/bundle.pem")), 2);
    let bundle = std::fs::read(root.join("ca/bundle.pem")).unwrap();
    for id in IDENTITIES {
        let trust = std::fs::read(root.join("nodes").join(id).join("ca.pem")).unwrap();
        assert_eq!(trust, bundle, "{id}: ca.pem is the bundle after begin");
    }
    every_identity_trusted(root, "after begin");

    let (code, stdout, stderr) = run(root, &["ca", "switch"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read(root.join("ca/previous/ca.crt")).unwrap(),
        old_cert
    );
    assert!(!root.join("ca/next").exists());
    every_identity_trusted(root, "after switch");

    // Refused, naming them, while anything is still signed by the previous CA.
    let (code, stdout, stderr) = run(root, &["ca", "finish"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("nodes/node-01/mocctl"), "{stderr}");
    assert!(root.join("ca/previous/ca.key").exists());

    let (code, stdout, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    every_identity_trusted(root, "after rotate");

    let (code, stdout, stderr) = run(root, &["ca", "finish"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    every_identity_trusted(root, "after finish");
    let new_cert = std::fs::read(root.join("ca/ca.crt")).unwrap();
    assert_eq!(std::fs::read(root.join("ca/bundle.pem")).unwrap(), new_cert);
    assert!(!root.join("ca/previous").exists());
    let retired: Vec<_> = std::fs::read_dir(root.join("ca/retired"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(retired, vec![old_cert]);
    for id in IDENTITIES {
        let dir = root.join("nodes").join(id);
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), new_cert, "{id}");
        let cert = dir.join("cert.pem");
        let (ok, _) = openssl_verify_at(&root.join("ca/ca.crt"), &cert, as_of());
        assert!(ok, "{id} is the new CA's");
        let end = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-enddate"]);
        assert!(
            end.contains("Feb 26 00:00:00 2027"),
            "{id}: 90 days, not capped: {end}"
        );
    }
    no_file_holds_key(root, &old_key, "after finish");
    // Every stage's report is one the published schema describes.
    let commands: Vec<String> = reports(root)
        .iter()
        .map(|r| r["command"].as_str().unwrap().to_string())
        .collect();
    for stage in ["ca begin", "ca switch", "ca finish"] {
        assert!(commands.iter().any(|c| c == stage), "{stage}: {commands:?}");
    }
}

#[test]
fn abort_before_switch_undoes_begin_and_a_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    let before = snapshot(root);

    let (code, stdout, stderr) = run(root, &["ca", "begin", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(snapshot(root), before, "a dry run writes nothing");
    assert!(!root.join(".rekey").exists());
    assert!(
        stdout.contains("4 credentials") || stdout.contains('4'),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(root, &["ca", "begin"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = run(root, &["ca", "abort"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!root.join("ca/next").exists());
    let cert = std::fs::read(root.join("ca/ca.crt")).unwrap();
    assert_eq!(std::fs::read(root.join("ca/bundle.pem")).unwrap(), cert);
    for id in IDENTITIES {
        let trust = std::fs::read(root.join("nodes").join(id).join("ca.pem")).unwrap();
        assert_eq!(trust, cert, "{id}: ca.pem is the CA alone again");
    }
    every_identity_trusted(root, "after abort");
    let last = reports(root)
        .pop()
        .expect("abort's report, checked against the schema");
    assert_eq!(last["command"], "ca abort");

    // After a switch, abort is refused and says what to do.
    run(root, &["ca", "begin"]);
    let (code, _, stderr) = run(root, &["ca", "switch"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(root, &["ca", "abort"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("rekey ca finish"), "{stderr}");
}

#[test]
fn begin_runs_each_changed_identitys_deploy_hook_and_switch_waits_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    let log = tempfile::tempdir().unwrap();
    let log = log.path().join("hooks.log");
    let fail = root.join("hooks-fail");
    std::fs::write(&fail, "").unwrap();
    install_hook(
        root,
        "deploy",
        "trust",
        &format!(
            "echo \"$REKEY_NODE/$REKEY_SERVICE $REKEY_CA_BUNDLE\" >>{}\n\
             [ \"$REKEY_SERVICE\" = kms ] && [ -e {} ] && exit 1\nexit 0",
            log.display(),
            fail.display()
        ),
    );
    let (code, stdout, stderr) = run(root, &["ca", "begin"]);
    assert_eq!(code, 3, "two hooks failed: {stdout}{stderr}");
    let said = std::fs::read_to_string(&log).unwrap();
    let bundle = root.join("ca/bundle.pem").canonicalize().unwrap();
    for id in IDENTITIES {
        let line = format!("{id} {}", bundle.display());
        assert!(said.lines().any(|l| l == line), "{id}: {said}");
    }

    // The kms hooks failed: the services may not trust the new CA yet.
    let (code, _, stderr) = run(root, &["ca", "switch", "--no-hooks"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("switch refused"), "{stderr}");
    assert!(root.join("ca/next").is_dir(), "nothing switched");

    // Fixed: the switch retries them first, then switches.
    std::fs::remove_file(&fail).unwrap();
    let (code, stdout, stderr) = run(root, &["ca", "switch"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(root.join("ca/previous").is_dir());
}

#[test]
fn switch_waits_for_ca_trust_settle_hours() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nca_trust_settle_hours = 24\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(root, &["ca", "begin"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = run(root, &["ca", "switch"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ca_trust_settle_hours"), "{stderr}");
    let later = (as_of() + days(1)).to_rfc3339();
    let (code, stdout, stderr) = run_unpinned(root, &["ca", "switch", "--as-of", &later]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// The run ids of the fleet at `root`, oldest first.
fn run_ids(root: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_stage_rolls_back_until_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    let before = snapshot(root);

    let (code, stdout, stderr) = run(root, &["ca", "begin"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let begin = run_ids(root).pop().unwrap();
    let (code, stdout, stderr) = run_unpinned(root, &["rollback", &begin]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        snapshot(root),
        before,
        "rolled back: ca/ and every ca.pem as before"
    );

    run(root, &["ca", "begin"]);
    let begun = snapshot(root);
    let begin = run_ids(root).pop().unwrap();
    let (code, stdout, stderr) = run(root, &["ca", "switch"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let switch = run_ids(root).pop().unwrap();
    // The begin cannot be rolled back under the switch.
    let (code, _, stderr) = run_unpinned(root, &["rollback", &begin]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("roll back the later stage"), "{stderr}");
    let (code, stdout, stderr) = run_unpinned(root, &["rollback", &switch]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(snapshot(root), begun, "the switch rolled back");
    every_identity_trusted(root, "switch rolled back");

    run(root, &["ca", "switch"]);
    run(root, &["rotate"]);
    let (code, stdout, stderr) = run(root, &["ca", "finish"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let finish = run_ids(root).pop().unwrap();
    let (code, _, stderr) = run_unpinned(root, &["rollback", &finish]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot be rolled back"), "{stderr}");
}

#[test]
fn the_policys_ca_reload_runs_once_per_stage_that_changes_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    let log = tempfile::tempdir().unwrap();
    let log = log.path().join("ca_reload.log");
    std::fs::write(
        root.join("rekey.toml"),
        format!(
            "version = 1\nca_reload = \"echo \\\"$REKEY_CA_BUNDLE\\\" >>{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    for stage in ["begin", "switch", "finish"] {
        if stage == "finish" {
            run(root, &["rotate"]);
        }
        let (code, stdout, stderr) = run(root, &["ca", stage]);
        assert_eq!(code, 0, "{stage}: {stdout}{stderr}");
    }
    // begin and finish changed the bundle; switch did not.
    let bundle = root.join("ca/bundle.pem").canonicalize().unwrap();
    let expected = format!("{0}\n{0}\n", bundle.display());
    assert_eq!(read(), expected);
}

#[test]
fn ca_status_shows_the_stage_and_both_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    short_lived_fleet(root);
    let status = |root: &std::path::Path| {
        let (code, stdout, stderr) = run_unpinned(root, &["ca", "status", "--format", "json"]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let steady = status(root);
    assert_eq!(steady["stage"], "steady");
    assert_eq!(steady["cas"].as_array().unwrap().len(), 1);
    run(root, &["ca", "begin"]);
    let begun = status(root);
    assert_eq!(begun["stage"], "begun");
    let roles: Vec<&str> = begun["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["active", "next"]);
    assert_eq!(
        begun["cas"][1]["key_id"],
        key_id(&root.join("ca/next/ca.crt")).as_str()
    );
    assert!(
        begun["cas"][1]["common_name"]
            .as_str()
            .unwrap()
            .starts_with("short-lived CA 2026-11-28"),
        "{begun}"
    );
    let (code, stdout, _) = run_unpinned(root, &["ca", "status"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("CA rotation: begun\n"), "{stdout}");
}
