//! A successor CA as openssl sees it, and imported CAs refused for each way they fall short.

use std::path::Path;
use std::process::Command;

use chrono::{TimeDelta, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CaPair, Terms, successor, successor_name};
use crate::ca::{Needed, Role, Rotation, Stage, Trusted, check_import, from_pem};
use crate::fleet::{CaSpec, Generator, window};
use crate::keys::{KeyAlg, KeyFormat};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

/// A fleet CA of `alg` ending in 60 days, as its certificate and key PEM.
fn old_ca(alg: KeyAlg, dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let generator = Generator::new(&CaSpec {
        alg,
        common_name: "short-lived CA".to_string(),
        window: window(now() - TimeDelta::days(305), 365),
        key_format: KeyFormat::Pkcs8,
    })
    .unwrap();
    generator.write_ca(dir).unwrap();
    (
        std::fs::read(dir.join("ca/ca.crt")).unwrap(),
        std::fs::read(dir.join("ca/ca.key")).unwrap(),
    )
}

fn successor_of(cert_pem: &[u8], alg: KeyAlg) -> CaPair {
    let block = crate::pemblock::single(cert_pem).unwrap();
    let (_, old) = X509Certificate::from_der(&block.der).unwrap();
    let common_name = successor_name("short-lived CA", now());
    let terms = Terms {
        alg,
        common_name,
        not_before: now(),
        not_after: now() + TimeDelta::days(365),
    };
    successor(old.subject(), &terms).unwrap()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_successor_is_a_ca_openssl_accepts_with_the_old_subject_and_a_dated_name() {
    crate::token::install_provider();
    for alg in [
        KeyAlg::P256,
        KeyAlg::P384,
        KeyAlg::Ed25519,
        KeyAlg::Rsa { bits: 2048 },
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (old_cert, _) = old_ca(alg, tmp.path());
        let new = successor_of(&old_cert, alg);
        // rekey's own checks: a CA, its key, a signer whose probe chains to it.
        let ca = from_pem(new.cert_pem.as_bytes(), Some(new.key_pem())).unwrap();
        assert_eq!(ca.public.alg, alg);
        assert_eq!(ca.common_name, "short-lived CA 2026-12-06");
        super::from_pem(new.cert_pem.as_bytes(), new.key_pem(), &ca).unwrap();
        // openssl's: self-signed and valid, CA:TRUE, keyCertSign, SKI = AKI, O kept.
        let path = tmp.path().join("new.crt");
        std::fs::write(&path, &new.cert_pem).unwrap();
        let path = path.to_str().unwrap();
        let at = (now() + TimeDelta::hours(1)).timestamp().to_string();
        let verified = openssl(&["verify", "-attime", &at, "-CAfile", path, path]);
        assert!(verified.contains("OK"), "{alg}: {verified}");
        let text = openssl(&["x509", "-in", path, "-noout", "-text"]);
        assert!(text.contains("CA:TRUE"), "{alg}: {text}");
        assert!(text.contains("Certificate Sign"), "{alg}: {text}");
        let ski = after_line(&text, "X509v3 Subject Key Identifier");
        let aki = after_line(&text, "X509v3 Authority Key Identifier");
        assert!(!ski.is_empty() && aki.contains(&ski), "{alg}: {ski} / {aki}");
        let subject = openssl(&["x509", "-in", path, "-noout", "-subject"]);
        assert!(
            subject.contains("O = rekey test fleet") && subject.contains("CN = short-lived CA 2026-12-06"),
            "{alg}: {subject}"
        );
        // A random serial, not one derived from the key: two CAs never share one.
        let again = successor_of(&old_cert, alg);
        assert_ne!(serial(&new.cert_pem), serial(&again.cert_pem), "{alg}");
        assert!(!format!("{new:?}").contains("PRIVATE"), "{alg}");
    }
}

#[test]
fn tokens_name_the_key_of_the_ca_that_signed_them() {
    crate::token::install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = old_ca(KeyAlg::P256, tmp.path());
    let ca = from_pem(&cert, None).unwrap();
    let signer = super::from_pem(&cert, &key, &ca).unwrap();
    let claims = crate::token::Claims::new("short-lived CA", "n/s", now(), now()).unwrap();
    let token = signer.tokens.sign(&claims).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid, Some(ca.key_id().hex()));
    crate::token::verify(token.as_bytes(), &ca, "n/s").unwrap();
}

#[test]
fn an_imported_ca_is_refused_for_each_way_it_falls_short() {
    crate::token::install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let needed = Needed {
        now: now(),
        until: now() + TimeDelta::days(210),
        days: 210,
    };
    // A good one: a year from now.
    let (good_cert, good_key) = self_signed(true, Some(KeyUsagePurpose::KeyCertSign), 365);
    check_import(good_cert.as_bytes(), good_key.as_bytes(), needed).unwrap();

    let refused = |cert: &str, key: &str| -> String {
        check_import(cert.as_bytes(), key.as_bytes(), needed)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (leaf, leaf_key) = self_signed(false, Some(KeyUsagePurpose::DigitalSignature), 365);
    assert!(refused(&leaf, &leaf_key).contains("not a CA"));
    let (_, other_key) = self_signed(true, Some(KeyUsagePurpose::KeyCertSign), 365);
    assert!(refused(&good_cert, &other_key).contains("does not belong"));
    let (short, short_key) = self_signed(true, Some(KeyUsagePurpose::KeyCertSign), 100);
    let why = refused(&short, &short_key);
    assert!(why.contains("at least 210 days"), "{why}");
    let (bare, bare_key) = self_signed(true, None, 365);
    assert!(refused(&bare, &bare_key).contains("keyCertSign"));
    let (no_sign, no_sign_key) = self_signed(true, Some(KeyUsagePurpose::DigitalSignature), 365);
    assert!(refused(&no_sign, &no_sign_key).contains("keyCertSign"));
    assert!(refused("not PEM", &good_key).contains("PEM"));
    let _ = tmp;
}

/// A self-signed P-256 certificate from now for `days`: a CA or not, with one key usage or
/// none.
fn self_signed(ca: bool, usage: Option<KeyUsagePurpose>, days: i64) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "enterprise intermediate");
    params.distinguished_name = name;
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = usage.into_iter().collect();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[1, 2, 3, 4]));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now().timestamp()).unwrap();
    params.not_after = params.not_before + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn after_line(text: &str, heading: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(heading));
    lines.next();
    lines.next().unwrap_or_default().trim().to_string()
}

fn serial(pem: &str) -> Vec<u8> {
    let block = crate::pemblock::single(pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&block.der).unwrap();
    cert.raw_serial().to_vec()
}

#[test]
fn during_a_rotation_credentials_verify_against_either_ca_and_say_which() {
    crate::token::install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = old_ca(KeyAlg::P256, tmp.path());
    let old = from_pem(&old_cert, None).unwrap();
    let old_signer = super::from_pem(&old_cert, &old_key, &old).unwrap();
    let new_pair = successor_of(&old_cert, KeyAlg::P256);
    let new = from_pem(new_pair.cert_pem.as_bytes(), None).unwrap();
    let new_signer =
        super::from_pem(new_pair.cert_pem.as_bytes(), new_pair.key_pem(), &new).unwrap();
    let switched = Rotation {
        stage: Stage::Switched,
        other: from_pem(&old_cert, None).unwrap(),
    };
    let trusted = Trusted {
        active: &new,
        rotation: Some(&switched),
    };
    let token = |signer: &super::CaSigner, iss: &str| {
        let claims = crate::token::Claims::new(iss, "n/s", now(), now() + TimeDelta::days(1));
        signer.tokens.sign(&claims.unwrap()).unwrap()
    };
    // A token with the kid of the CA that signed it, each way round.
    let by_old = token(&old_signer, &old.common_name);
    let by_new = token(&new_signer, &new.common_name);
    let role = |t: &str| crate::token::verify_trusted(t.as_bytes(), trusted, "n/s").map(|r| r.1);
    assert_eq!(role(&by_old), Ok(Role::Previous));
    assert_eq!(role(&by_new), Ok(Role::Active));
    // Without a kid (a token from before rekey named one), each CA is tried.
    let bare = crate::token::Signer::from_pem(&old_key, old.jwt_alg).unwrap();
    let claims = crate::token::Claims::new(&old.common_name, "n/s", now(), now()).unwrap();
    assert_eq!(role(&bare.sign(&claims).unwrap()), Ok(Role::Previous));
    // With one CA alone, the other's tokens do not verify.
    let alone = crate::token::verify_trusted(by_old.as_bytes(), Trusted::alone(&new), "n/s");
    assert!(alone.is_err());
}
