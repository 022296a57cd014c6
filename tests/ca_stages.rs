//! The stages of a CA rotation through the binary (`rekey ca begin`, `switch`, `finish`,
//! `abort`), on a fleet whose CA ends in 60 days and whose every identity keeps a trust file
//! `ca.pem`: after each stage every certificate verifies (openssl) against its own `ca.pem` and
//! against `ca/bundle.pem`, every token with the key of the CA its `kid` names; after `finish`
//! every credential is the new CA's for a full 90 days, the bundle holds the new CA alone, and
//! no file under the root holds the old CA's private key.

mod common;

use std::path::Path;

use common::*;
use rekey::fleet::{CaSpec, IdentitySpec};
use rekey::keys::{KeyAlg, KeyFormat};

const IDENTITIES: [&str; 4] = [
    "node-01/mocctl",
    "node-01/kms",
    "node-02/kms",
    "mgmt/cloudagent",
];

/// A fleet whose CA ends 60 days after AS_OF, each identity with `ca.pem` = `ca/ca.crt`.
pub fn short_lived_fleet(root: &Path) {
    let ca = CaSpec {
        alg: KeyAlg::P256,
        common_name: "short-lived CA".to_string(),
        window: rekey::fleet::window(as_of() - days(305), 365),
        key_format: KeyFormat::Pkcs8,
    };
    let ids: Vec<IdentitySpec> = IDENTITIES
        .iter()
        .zip([40, 10, 70, 20])
        .map(|(id, ago)| {
            let (node, service) = id.split_once('/').unwrap();
            IdentitySpec::new(node, service, issued(ago))
        })
        .collect();
    build(root, &ca, &ids);
    let pem = std::fs::read(root.join("ca/ca.crt")).unwrap();
    for id in IDENTITIES {
        std::fs::write(root.join("nodes").join(id).join("ca.pem"), &pem).unwrap();
    }
}

/// The certificates a PEM file holds.
fn certificates(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The invariant of every instant: each certificate verifies against its own `ca.pem` and the
/// bundle (when there is one), and each token with the key of the trusted CA its `kid` names.
pub fn every_identity_trusted(root: &Path, when: &str) {
    let bundle = root.join("ca/bundle.pem");
    for id in IDENTITIES {
        let dir = root.join("nodes").join(id);
        let cert = dir.join("cert.pem");
        let (ok, said) = openssl_verify_at(&dir.join("ca.pem"), &cert, as_of());
        assert!(ok, "{when}: {id} against its ca.pem: {said}");
        if bundle.exists() {
            let (ok, said) = openssl_verify_at(&bundle, &cert, as_of());
            assert!(ok, "{when}: {id} against the bundle: {said}");
        }
        token_verifies(root, &dir.join("token.jwt"), when);
    }
}

/// A token verifies with the key of the CA its `kid` names (one of `ca/`'s CAs), or, without a
/// `kid` (a token from before rekey wrote one), with one of them.
fn token_verifies(root: &Path, token: &Path, when: &str) {
    let token = std::fs::read_to_string(token).unwrap();
    let header = jsonwebtoken::decode_header(token.trim()).unwrap();
    let cas: Vec<_> = ["ca/ca.crt", "ca/next/ca.crt", "ca/previous/ca.crt"]
        .iter()
        .map(|c| root.join(c))
        .filter(|c| c.exists())
        .filter(|c| header.kid.as_ref().is_none_or(|kid| key_id(c) == *kid))
        .collect();
    assert!(
        !cas.is_empty(),
        "{when}: no CA of ca/ has the key id {:?}",
        header.kid
    );
    let verifies = |ca: &Path| {
        let pubkey = openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-pubkey"]);
        let key = jsonwebtoken::DecodingKey::from_ec_pem(pubkey.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(token.trim(), &key, &validation).is_ok()
    };
    assert!(
        cas.iter().any(|c| verifies(c)),
        "{when}: token verifies with no CA of {cas:?}"
    );
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, lowercase hex, computed by openssl.
fn key_id(cert: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let der = tmp.path().join("pub.der");
    let pubkey = tmp.path().join("pub.pem");
    let c = cert.to_str().unwrap();
    openssl(&[
        "x509",
        "-in",
        c,
        "-noout",
        "-pubkey",
        "-out",
        pubkey.to_str().unwrap(),
    ]);
    let p = pubkey.to_str().unwrap();
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        p,
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let digest = openssl(&["dgst", "-sha256", "-r", der.to_str().unwrap()]);
    digest.split_whitespace().next().unwrap().to_string()
}

/// Every file under `root` whose bytes contain `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

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
    // Every base64 line of the key but the first (an encoding prefix every P-256 key shares).
    let text = String::from_utf8(old_key).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .skip(1)
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        let holding = files_holding(root, line.as_bytes());
        assert_eq!(
            holding,
            Vec::<String>::new(),
            "the old CA key's line {line:?}"
        );
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
