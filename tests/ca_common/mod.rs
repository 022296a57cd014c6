//! What the CA rotation's tests share: a fleet whose CA ends in 60 days with a trust file
//! `ca.pem` in every identity, and the invariant of every instant of a rotation, checked with
//! openssl and an independent JWT library.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::path::Path;

use crate::common::*;
use rekey::fleet::{CaSpec, IdentitySpec};
use rekey::keys::{KeyAlg, KeyFormat};

pub const IDENTITIES: [&str; 4] = [
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
pub fn certificates(path: &Path) -> usize {
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
pub fn token_verifies(root: &Path, token: &Path, when: &str) {
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
pub fn key_id(cert: &Path) -> String {
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
pub fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
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

/// No file under `root` holds the key whose PEM text is `key`: every base64 line of it but the
/// first (an encoding prefix every P-256 key shares) is looked for in every file.
pub fn no_file_holds_key(root: &Path, key: &[u8], when: &str) {
    let text = String::from_utf8(key.to_vec()).unwrap();
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
            "{when}: the old CA key's line {line:?}"
        );
    }
}
