//! When the CA must be rotated (docs/design.md §3a): within `ca_rotate_before_days` of the
//! active CA's end, `status` and `plan` exit 3 and name `rekey ca begin`, on a fleet otherwise
//! at rest; `--expires-within` keeps its own order; and `rekey demo --ca-days N` builds a fleet
//! whose CA ends in N days, with the trust files a CA rotation keeps.

mod common;

use std::path::Path;

use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// A fleet rotated an hour before AS_OF (every credential fresh), under a CA that ends `left`
/// after AS_OF.
fn fleet_at_rest(root: &Path, left: chrono::TimeDelta) {
    let mut ca = ca_spec(KeyAlg::P256);
    // The CA began 300 days back; its window is whole days.
    ca.window = rekey::fleet::window(as_of() - days(300), 300 + left.num_days());
    let fresh = rekey::fleet::window(as_of() - chrono::TimeDelta::hours(1), 90);
    let ids = [
        IdentitySpec::new("node-01", "mocctl", fresh),
        IdentitySpec::new("node-01", "kms", fresh),
    ];
    build(root, &ca, &ids);
}

/// `rekey ARGS --root ROOT --as-of AT`: (exit code, stdout, stderr).
fn at(root: &Path, at: &str, args: &[&str]) -> (i32, String, String) {
    let mut full = args.to_vec();
    full.extend(["--as-of", at]);
    run_unpinned(root, &full)
}

#[test]
fn inside_the_window_status_and_plan_exit_3_and_name_rekey_ca_begin() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The CA ends exactly 120 days (ca_rotate_before_days) after AS_OF.
    fleet_at_rest(root, days(120));
    let (code, stdout, stderr) = at(root, AS_OF, &["status"]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let next = format!(
        "next: rekey ca begin --root {}",
        root.canonicalize().unwrap().display()
    );
    assert!(stdout.contains(&next), "{stdout}");
    assert!(stdout.contains("a CA rotation is due: the CA ends 2027-03-28T00:00:00Z (120d 0h left), within ca_rotate_before_days (120 days)"), "{stdout}");
    assert!(!stdout.contains("next: nothing to do"), "{stdout}");
    let (code, _, summary) = at(root, AS_OF, &["plan", "-o", "-"]);
    assert_eq!(code, 3, "{summary}");
    assert!(summary.contains(&next), "{summary}");
    let (code, doc, _) = at(root, AS_OF, &["status", "--format", "json"]);
    assert_eq!(code, 3, "{doc}");

    // One second before the window: nothing to do.
    let before = "2026-11-27T23:59:59Z";
    let (code, stdout, _) = at(root, before, &["status"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("next: nothing to do"), "{stdout}");
    assert!(!stdout.contains("rekey ca begin"), "{stdout}");
    let (code, _, summary) = at(root, before, &["plan", "-o", "-"]);
    assert_eq!(code, 0, "{summary}");

    // A policy that wants rotations earlier moves the window.
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nca_rotate_before_days = 121\nca_validity_days = 400\n",
    )
    .unwrap();
    let (code, stdout, _) = at(root, before, &["status"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("within ca_rotate_before_days (121 days)"),
        "{stdout}"
    );
}

#[test]
fn the_monitor_check_keeps_its_order_inside_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fleet_at_rest(root, days(100));
    // Nothing expires within 14 days: a rotation due, of the CA or a credential, is not the
    // monitor's question.
    let (code, stdout, _) = at(root, AS_OF, &["status", "--expires-within", "14d"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("next: rekey ca begin"), "{stdout}");
    // The CA itself within the window asked about: 3.
    let (code, stdout, _) = at(root, AS_OF, &["status", "--expires-within", "101d"]);
    assert_eq!(code, 3, "{stdout}");
}

#[test]
fn the_capped_validity_warning_names_rekey_ca_begin() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = rekey::fleet::window(as_of() - days(300), 360);
    build(root, &ca, &[IdentitySpec::new("n1", "mocctl", issued(30))]);
    let (code, stdout, _) = run(root, &["status"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains(
            "new validity is capped at its expiry until a new CA signs (next: rekey ca begin)"
        ),
        "{stdout}"
    );
    let (_, _, summary) = run(root, &["plan", "-o", "-"]);
    assert!(summary.contains("(next: rekey ca begin)"), "{summary}");
}

#[test]
fn demo_with_ca_days_builds_a_fleet_whose_ca_ends_then_with_trust_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = rekey()
        .args(["demo", "--ca-days", "60", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Its CA ends in 60 days"), "{said}");
    for stage in [
        "rekey ca begin --root",
        "rekey ca switch --root",
        "rekey ca finish --root",
    ] {
        assert!(said.contains(stage), "{stage}: {said}");
    }
    assert!(said.contains("next: rekey ca begin --root"), "{said}");
    // The CA ends 60 days from now (to the minute: the demo reads the clock once).
    let ca = dir.join("ca/ca.crt");
    let end = openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-enddate"]);
    let end = chrono::NaiveDateTime::parse_from_str(
        end.trim().trim_start_matches("notAfter="),
        "%b %e %H:%M:%S %Y GMT",
    )
    .unwrap()
    .and_utc();
    let expected = chrono::Utc::now() + days(60);
    assert!(
        (end - expected).num_seconds().abs() < 300,
        "{end} vs {expected}"
    );
    // The bundle is the CA alone, and every identity's ca.pem is the bundle, which verifies
    // its certificate.
    let bundle = std::fs::read(dir.join("ca/bundle.pem")).unwrap();
    assert_eq!(bundle, std::fs::read(&ca).unwrap());
    let mut identities = 0;
    for node in std::fs::read_dir(dir.join("nodes")).unwrap() {
        for service in std::fs::read_dir(node.unwrap().path()).unwrap() {
            let service = service.unwrap().path();
            assert_eq!(
                std::fs::read(service.join("ca.pem")).unwrap(),
                bundle,
                "{}",
                service.display()
            );
            identities += 1;
        }
    }
    assert!(identities > 10, "{identities}");
    let kms = dir.join("nodes/node-03/kms");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        kms.join("ca.pem").to_str().unwrap(),
        kms.join("cert.pem").to_str().unwrap(),
    ]);
    assert!(verified.contains("OK"), "{verified}");
    // The status a new user runs next names the first stage.
    let (code, stdout, _) = run_unpinned(&dir, &["status"]);
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("next: rekey ca begin --root"), "{stdout}");
}

/// A new user walks the stages on the demo fleet, whose identities left for a person (one
/// needs recover, two have a problem) are still signed by the previous CA after the rotate:
/// the next step names them as what rotate skips, and finish refuses naming them, never
/// "rekey rotate" alone, which would move nothing.
#[test]
fn after_the_switch_next_says_which_credentials_rotate_cannot_move() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = rekey()
        .args(["demo", "--ca-days", "60", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for stage in [&["ca", "begin"][..], &["ca", "switch"], &["rotate"]] {
        let (code, _, err) = run_unpinned(&dir, stage);
        assert!(code == 0 || code == 4, "{stage:?}: {err}");
    }
    let (code, stdout, _) = run_unpinned(&dir, &["status"]);
    assert_eq!(code, 4, "{stdout}");
    let next = stdout
        .lines()
        .find(|l| l.starts_with("next: rekey rotate"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        next.contains(
            "5 credentials are still signed by the previous CA; 5 of them belong to \
             identities that need recover or have a problem, which rotate skips"
        ),
        "{next}"
    );
    let (code, _, err) = run_unpinned(&dir, &["ca", "finish"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("3 identities are still signed by the previous CA"),
        "{err}"
    );
}

#[test]
fn demo_without_ca_days_has_a_ten_year_ca_and_no_trust_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = rekey().args(["demo", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!dir.join("ca/bundle.pem").exists());
    assert!(!dir.join("nodes/node-03/kms/ca.pem").exists());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("rekey ca begin"), "{said}");
    let (code, _, _) = rekey()
        .args(["demo", "--ca-days", "0", "--dir"])
        .arg(tmp.path().join("zero"))
        .output()
        .map(|o| (o.status.code(), (), ()))
        .unwrap();
    assert_eq!(code, Some(2));
}
