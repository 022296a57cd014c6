//! The independent check: openssl over every identity of the fleet.

use std::path::{Path, PathBuf};

use crate::common::*;

/// openssl, every identity in two processes: each certificate verifies against the CA at the
/// pinned instant (one `openssl verify` of them all), and each private key's public half is its
/// certificate's (one `openssl storeutl` of every key and certificate in turn).
pub fn openssl_fleet(root: &Path, ids: &[String], what: &str) {
    let certs: Vec<PathBuf> = ids
        .iter()
        .map(|id| root.join(id).join("cert.pem"))
        .collect();
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &as_of().timestamp().to_string(),
            "-CAfile",
        ])
        .arg(root.join("ca/ca.crt"))
        .args(&certs)
        .output()
        .expect("openssl is installed (see .ci/run)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.lines().filter(|l| l.ends_with(": OK")).count() == ids.len(),
        "{what}: openssl verify: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pems = Vec::new();
    for id in ids {
        for file in ["key.pem", "cert.pem"] {
            pems.extend(std::fs::read(root.join(id).join(file)).unwrap());
            pems.push(b'\n');
        }
    }
    let all = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(all.path(), &pems).unwrap();
    let text = openssl(&["storeutl", "-noout", "-text", all.path().to_str().unwrap()]);
    let publics = public_halves(&text);
    assert_eq!(
        publics.len(),
        2 * ids.len(),
        "{what}: openssl storeutl read {} objects",
        publics.len()
    );
    for (id, pair) in ids.iter().zip(publics.chunks(2)) {
        let [(key_kind, key), (cert_kind, cert)] = pair else {
            unreachable!()
        };
        assert_eq!(
            (key_kind.as_str(), cert_kind.as_str()),
            ("Pkey", "Certificate"),
            "{what}: {id}"
        );
        assert!(
            !key.is_empty() && key == cert,
            "{what}: {id}: key does not match certificate"
        );
    }
}

/// Each object `openssl storeutl -text` printed: its kind (`Pkey`, `Certificate`) and the hex
/// of its public key (the first `pub:` or `modulus:` block in it).
pub fn public_halves(text: &str) -> Vec<(String, String)> {
    let mut objects: Vec<(String, String)> = Vec::new();
    let mut reading = false;
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((n, kind)) = line.split_once(": ")
            && !line.starts_with(' ')
            && n.chars().all(|c| c.is_ascii_digit())
        {
            objects.push((kind.trim().to_string(), String::new()));
            (reading, done) = (false, false);
            continue;
        }
        let Some((_, public)) = objects.last_mut() else {
            continue;
        };
        if reading
            && !trimmed.is_empty()
            && trimmed.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
        {
            public.push_str(trimmed);
        } else if reading {
            (reading, done) = (false, true);
        } else if !done && matches!(trimmed.to_ascii_lowercase().as_str(), "pub:" | "modulus:") {
            reading = true;
        }
    }
    objects
}
