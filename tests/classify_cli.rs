//! Every state and problem of docs/design.md §3 on generated fleets, through the real binary.

mod common;

use std::os::unix::fs::symlink;

use common::*;
use rekey::catalog::every_case;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

fn id(node: &str, service: &str, ago: i64) -> IdentitySpec {
    IdentitySpec::new(node, service, issued(ago))
}

fn with(mut spec: IdentitySpec, f: impl FnOnce(&mut IdentitySpec)) -> IdentitySpec {
    f(&mut spec);
    spec
}

#[rustfmt::skip]
const EXPECTED: &[(&str, &str, &str)] = &[
    ("n1/mocctl/cert", "due", "cannot self-rotate"),
    ("n1/mocctl/token", "due", "cannot self-rotate"),
    ("n1/kms/cert", "healthy", "renews itself: 60 of 90 days left"),
    ("n1/kms/token", "due", "cannot self-rotate"),
    ("n1/csi/cert", "stalled", "self-rotation stalled: 10 of 90 days left"),
    ("n1/kva/cert", "fresh", "fresh: issued 2026-11-27T02:00:00Z"),
    ("n1/kva/token", "fresh", "fresh"),
    ("n1/caph/cert", "stalled", "self-rotation stalled: certificate expired 2026-11-18"),
    ("n1/caph/token", "due", "cannot self-rotate"),
    ("n1/backup/cert", "expired", "certificate expired 2026-11-18; the token is still valid"),
    ("n1/backup/token", "due", "cannot self-rotate"),
    ("n2/mocctl/cert", "recover", "token expired 2026-11-23: run rekey recover"),
    ("n2/mocctl/token", "recover", "token expired 2026-11-23: run rekey recover"),
    ("n2/kms/cert", "recover", "certificate expired 2026-11-18 and there is no token: run rekey recover"),
    ("n2/csi/cert", "healthy", "renews itself"),
    ("n2/kva/token", "due", "cannot self-rotate"),
    ("n2/caph/cert", "healthy", "renews itself"),
    ("n2/caph/token", "due", "cannot self-rotate"),
    ("n3/mocctl/cert", "problem", "cert.pem was not issued by this CA"),
    ("n3/mocctl/token", "problem", "identity has a problem: cert.pem was not issued by this CA"),
    ("n3/kms/cert", "problem", "key.pem does not match cert.pem"),
    ("n3/csi/cert", "problem", "cert.pem is not valid PEM"),
    ("n3/kva/cert", "problem", "cert.pem holds 2 PEM blocks, expected one"),
    ("n3/caph/cert", "problem", "cert.pem is a symbolic link"),
    ("n3/caph/token", "problem", "identity has a problem: cert.pem is a symbolic link"),
    ("n4/mocctl/token", "problem", "token.jwt has a malformed header or claims"),
    ("n4/kms/token", "problem", "token.jwt is not signed with"),
    ("n4/csi/token", "problem", "token.jwt signature does not verify with the CA key"),
    ("n4/kva/token", "problem", "token.jwt sub does not name this identity (n4/kva)"),
    ("n4/caph/token", "problem", "token.jwt is larger than 1 MiB"),
    ("n5/mocctl/cert", "problem", "cert.pem is not valid until 2026-11-30T00:00:00Z"),
];

fn check_every_case(ca: KeyAlg, leaf: KeyAlg) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &ca_spec(ca), &every_case(as_of(), leaf));
    let got = states(dir.path());
    for (key, state, reason) in EXPECTED {
        let (got_state, got_reason) = got
            .get(*key)
            .unwrap_or_else(|| panic!("{ca}: no row for {key}"));
        assert_eq!(got_state, state, "{ca}: {key}: {got_reason}");
        assert!(
            got_reason.contains(reason),
            "{ca}: {key}: {got_reason:?} lacks {reason:?}"
        );
    }
    assert_eq!(
        got.len(),
        40,
        "{ca}: one row per credential present: {:?}",
        got.keys()
    );
    let (status_code, _, _) = run(dir.path(), &["status"]);
    let (plan_code, _, _) = run(dir.path(), &["plan"]);
    assert_eq!((status_code, plan_code), (4, 4), "{ca}");
    // The symlink's target was a valid certificate; it is never read through the link.
    assert!(dir.path().join("outside/n3-caph.pem").is_file());
}

#[test]
fn every_state_and_problem_with_a_p256_ca() {
    check_every_case(KeyAlg::P256, KeyAlg::P384);
}

#[test]
fn every_state_and_problem_with_an_rsa_ca() {
    check_every_case(KeyAlg::Rsa { bits: 2048 }, KeyAlg::Ed25519);
}

#[test]
fn every_state_and_problem_with_an_ed25519_ca() {
    check_every_case(KeyAlg::Ed25519, KeyAlg::Rsa { bits: 3072 });
}

#[test]
fn exit_codes_follow_the_worst_finding() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Only rotations due.
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[id("n1", "mocctl", 30), id("n1", "kms", 30)],
    );
    assert_eq!(run(root, &["status"]).0, 3);
    assert_eq!(run(root, &["plan"]).0, 3);

    // Nothing due: a self-renewing certificate with plenty left, and a fresh pair.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[
            with(id("n1", "kms", 10), |s| s.token = None),
            id("n1", "mocctl", 0),
        ],
    );
    assert_eq!(run(root, &["status"]).0, 0);
    assert_eq!(run(root, &["plan"]).0, 0);

    // A healthy certificate inside --warn-days is work for status, not for the plan.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[with(id("n1", "kms", 65), |s| s.token = None)],
    );
    assert_eq!(states(root)["n1/kms/cert"].0, "healthy");
    assert_eq!(
        run(root, &["status"]).0,
        3,
        "25 days left is within the default 30"
    );
    assert_eq!(run(root, &["status", "--warn-days", "20"]).0, 0);
    assert_eq!(run(root, &["plan"]).0, 0);

    // One problem makes it 4.
    std::fs::write(root.join("nodes/n1/kms/cert.pem"), "garbage").unwrap();
    assert_eq!(run(root, &["status"]).0, 4);
    assert_eq!(run(root, &["plan"]).0, 4);
}

#[test]
fn layout_problems_are_reported_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, &ca_spec(KeyAlg::P256), &[id("n1", "mocctl", 0)]);
    let nodes = root.join("nodes");
    std::fs::create_dir_all(nodes.join("bad name/svc")).unwrap();
    std::fs::create_dir_all(nodes.join("n1").join("x".repeat(64))).unwrap();
    let non_utf8 = std::ffi::OsStr::new(std::str::from_utf8(b"n").unwrap()).to_os_string();
    let mut bytes = non_utf8.into_encoded_bytes();
    bytes.push(0xff);
    let weird = unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes) };
    std::fs::create_dir_all(nodes.join("n1").join(&weird)).unwrap();
    std::fs::create_dir_all(nodes.join("n1/empty")).unwrap();
    symlink(nodes.join("n1/mocctl"), nodes.join("n1/linked")).unwrap();
    symlink(nodes.join("n1"), nodes.join("n9")).unwrap();
    std::fs::write(nodes.join("README"), "ignored").unwrap();

    let (code, stdout, _) = run(root, &["status"]);
    assert_eq!(code, 4, "{stdout}");
    for line in [
        "problem: nodes/bad name: is not a valid node name",
        &format!(
            "problem: nodes/n1/{}: is not a valid service name",
            "x".repeat(64)
        ),
        "problem: nodes/n1/n\u{fffd}: is not a valid service name",
        "problem: nodes/n1/linked: service directory is a symbolic link",
        "problem: nodes/n9: node directory is a symbolic link",
        "note: nodes/n1/empty: has no cert.pem or token.jwt: ignored",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    let (_, plan, stderr) = run(root, &["plan"]);
    assert!(
        plan.contains("[[issue]]\npath = \"nodes/n1/linked\""),
        "{plan}"
    );
    assert!(
        stderr.contains("nodes/n9: node directory is a symbolic link"),
        "{stderr}"
    );
    assert!(
        !plan.contains("empty"),
        "a note is not a plan issue: {plan}"
    );
}

#[test]
fn an_empty_directory_alone_does_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, &ca_spec(KeyAlg::P256), &[id("n1", "mocctl", 0)]);
    std::fs::create_dir_all(root.join("nodes/n1/empty")).unwrap();
    assert_eq!(run(root, &["status"]).0, 0);
}

/// The fleet made by `fixtures/make-openssl-fleet.sh` with the openssl command line alone.
#[test]
fn a_fleet_made_by_openssl_is_classified_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openssl-rsa");
    let got = states(&root);
    #[rustfmt::skip]
    let expected = [
        ("n1/mocctl/cert", "due", "cannot self-rotate"),
        ("n1/kms/cert", "healthy", "renews itself: 70 of 90 days left"),
        ("n1/csi/cert", "stalled", "self-rotation stalled: 8 of 90 days left"),
        ("n1/kva/cert", "stalled", "certificate expired 2026-11-23"),
        ("n2/backup/cert", "expired", "the token is still valid"),
        ("n2/kva/token", "recover", "token expired 2026-11-26"),
        ("n2/caph/cert", "fresh", "fresh: issued 2026-11-27T12:00:00Z"),
        ("n3/mocctl/cert", "problem", "key.pem does not match cert.pem"),
        ("n3/kms/cert", "problem", "cert.pem was not issued by this CA"),
        ("n3/csi/token", "problem", "token.jwt has a malformed header"),
        ("n3/nodeagent/token", "problem", "token.jwt is not signed with RS256"),
        ("n3/kva/token", "problem", "token.jwt sub does not name this identity (n3/kva)"),
        ("n3/cert-manager/token", "problem", "token.jwt signature does not verify"),
        ("n4/mocctl/token", "due", "cannot self-rotate"),
        ("n4/kms/cert", "healthy", "renews itself"),
        ("n4/csi/cert", "problem", "cert.pem is not valid PEM"),
        ("n4/caph/cert", "problem", "cert.pem is a symbolic link"),
        ("n4/kva/cert", "problem", "cert.pem subject repeats an attribute type, which cannot be reproduced exactly"),
        ("n4/backup/cert", "due", "cannot self-rotate"),
    ];
    for (key, state, reason) in expected {
        let (got_state, got_reason) = &got[key];
        assert_eq!(got_state, state, "{key}: {got_reason}");
        assert!(
            got_reason.contains(reason),
            "{key}: {got_reason:?} lacks {reason:?}"
        );
    }
    assert!(!got.contains_key("n4/mocctl/cert") && !got.contains_key("n4/kms/token"));
}
