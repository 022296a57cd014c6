//! The issuing CA: its certificate, checked once at start, and whether its key is at hand.
//!
//! A CA that cannot be trusted to judge the fleet (unparseable, not a CA, key for another
//! certificate, unsupported algorithm) is fatal: nothing else can be classified without it. This
//! module verifies leaf signatures against the CA; it never signs.

use std::path::Path;

use crate::digest::Digest;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::fsio::{self, Slot};
use crate::keys::{self, KeyAlg, PublicKey};
use crate::pemblock;

/// The CA as rekey judges the fleet against it.
pub struct Ca {
    /// SHA-256 of the CA certificate's DER, lowercase hex (the plan's `ca_sha256`).
    pub sha256: Digest,
    pub common_name: String,
    pub subject_der: Vec<u8>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub public: PublicKey,
    pub jwt_alg: jsonwebtoken::Algorithm,
    /// Whether `ca/ca.key` is present (and matches); only writing needs it.
    pub has_key: bool,
    spki_der: Vec<u8>,
    decoding_key: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .field("sha256", &self.sha256)
            .field("alg", &self.public.alg)
            .field("not_after", &self.not_after)
            .field("has_key", &self.has_key)
            .finish_non_exhaustive()
    }
}

/// The JWT algorithm fixed by a CA key type (docs/design.md §2).
pub fn jwt_alg_for(alg: KeyAlg) -> jsonwebtoken::Algorithm {
    match alg {
        KeyAlg::Rsa { .. } => jsonwebtoken::Algorithm::RS256,
        KeyAlg::P256 => jsonwebtoken::Algorithm::ES256,
        KeyAlg::P384 => jsonwebtoken::Algorithm::ES384,
        KeyAlg::Ed25519 => jsonwebtoken::Algorithm::EdDSA,
    }
}

/// Loads `<root>/ca/ca.crt` (and checks `<root>/ca/ca.key` against it when present).
pub fn load(root: &Path) -> Result<Ca> {
    let dir = root.join("ca");
    let meta = std::fs::symlink_metadata(&dir)
        .with_context(|| format!("failed to find the CA directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symbolic link is refused)",
            dir.display()
        );
    }
    let cert_path = dir.join("ca.crt");
    let cert_pem = match fsio::read_credential(&cert_path) {
        Slot::Present(bytes) => bytes,
        Slot::Absent => bail!("CA certificate {} is missing", cert_path.display()),
        Slot::Unusable(why) => bail!("CA certificate {} {why}", cert_path.display()),
    };
    let key_path = dir.join("ca.key");
    let key_pem = match fsio::read_credential(&key_path) {
        Slot::Present(bytes) => Some(bytes),
        Slot::Absent => None,
        Slot::Unusable(why) => bail!("CA key {} {why}", key_path.display()),
    };
    from_pem(&cert_pem, key_pem.as_deref())
        .with_context(|| format!("CA in {} is unusable", dir.display()))
}

/// Builds the CA from its certificate and, optionally, its private key (both PEM).
pub fn from_pem(cert_pem: &[u8], key_pem: Option<&[u8]>) -> Result<Ca> {
    let block = pemblock::single(cert_pem).map_err(|e| anyhow::anyhow!("ca.crt {e}"))?;
    if block.label != "CERTIFICATE" {
        bail!("ca.crt holds a {} block, not a CERTIFICATE", block.label);
    }
    let (rest, cert) = X509Certificate::from_der(&block.der)
        .map_err(|e| anyhow::anyhow!("ca.crt is not a valid X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        bail!("ca.crt has trailing data after the certificate");
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => bail!("ca.crt is not a CA certificate (basicConstraints cA is not set)"),
        Err(e) => bail!("ca.crt has malformed basicConstraints: {e}"),
    }
    if let Ok(Some(ku)) = cert.key_usage()
        && !ku.value.key_cert_sign()
    {
        bail!("ca.crt key usage does not allow signing certificates (keyCertSign)");
    }
    let public = keys::from_spki(cert.public_key()).map_err(|e| anyhow::anyhow!("ca.crt {e}"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .context("ca.crt has no subject common name (tokens name it as their issuer)")?;
    if let Some(key_pem) = key_pem {
        let key =
            keys::public_from_private_pem(key_pem).map_err(|e| anyhow::anyhow!("ca.key {e}"))?;
        if key != public {
            bail!("ca.key does not belong to ca.crt");
        }
    }
    let decoding_key = match public.alg {
        KeyAlg::Rsa { .. } => jsonwebtoken::DecodingKey::from_rsa_der(&public.bits),
        KeyAlg::P256 | KeyAlg::P384 => jsonwebtoken::DecodingKey::from_ec_der(&public.bits),
        KeyAlg::Ed25519 => jsonwebtoken::DecodingKey::from_ed_der(&public.bits),
    };
    Ok(Ca {
        sha256: Digest::of(&block.der),
        common_name,
        subject_der: cert.subject().as_raw().to_vec(),
        not_before: to_utc(cert.validity().not_before.timestamp()),
        not_after: to_utc(cert.validity().not_after.timestamp()),
        jwt_alg: jwt_alg_for(public.alg),
        public,
        has_key: key_pem.is_some(),
        spki_der: cert.public_key().raw.to_vec(),
        decoding_key,
    })
}

impl Ca {
    /// Whether `cert` was signed by this CA: same issuer name and a signature that verifies.
    pub fn issued(&self, cert: &X509Certificate<'_>) -> bool {
        if cert.issuer().as_raw() != self.subject_der.as_slice() {
            return false;
        }
        let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&self.spki_der) else {
            return false;
        };
        cert.verify_signature(Some(&spki)).is_ok()
    }

    pub fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding_key
    }
}

/// Seconds since the epoch as a UTC instant, saturating at the representable range.
pub fn to_utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}
