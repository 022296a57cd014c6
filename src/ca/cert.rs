//! One CA: its certificate, checked once at start, and whether its key is at hand.
//!
//! A CA certificate that cannot be trusted to judge the fleet (unparseable, not a CA,
//! unsupported algorithm) is fatal: nothing else can be classified without it. This module
//! verifies leaf signatures against the CA; it never signs, and it never reads `ca/ca.key`: it
//! only looks at the file's type and mode, so that a user who may not read the key can still
//! run `status` and `plan`. The key is read, and checked against the certificate, by `signer`,
//! for writing commands only.

use std::path::Path;

use crate::digest::Digest;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use aws_lc_rs::signature::ParsedPublicKey;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::fsio::{self, Slot};
use crate::keys::{self, KeyAlg, PublicKey};
use crate::pemblock;

/// The CA as rekey judges the fleet against it.
pub struct Ca {
    /// SHA-256 of the CA certificate's DER, lowercase hex (the plan's `ca_sha256`).
    pub(crate) sha256: Digest,
    pub common_name: String,
    pub(crate) subject_der: Vec<u8>,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
    pub public: PublicKey,
    pub jwt_alg: jsonwebtoken::Algorithm,
    /// What is at `ca/ca.key`, seen without reading it; only writing needs the key itself.
    pub(crate) key: KeyAccess,
    spki_der: Vec<u8>,
    /// SHA-256 of `spki_der` (see [`Ca::key_id`]).
    key_id: Digest,
    /// The key identifier leaves it signs name in their authority key identifier: its own
    /// subject key identifier, or (without one) RFC 5280's method 1 on its key.
    pub(crate) subject_key_id: Vec<u8>,
    decoding_key: jsonwebtoken::DecodingKey,
    /// The CA key parsed once, with the signature algorithm a leaf it signs carries (what rekey
    /// and rcgen sign with for this key); other algorithms are checked by x509-parser.
    leaf_verifier: Option<(Oid<'static>, ParsedPublicKey)>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .field("sha256", &self.sha256)
            .field("alg", &self.public.alg)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// `ca/ca.key` as the read side sees it: by its type and mode, never its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyAccess {
    Absent,
    /// A regular file; `readable`: by this process's user; `mode`: its permission bits.
    Present { readable: bool, mode: u32 },
    /// Something writers will refuse (a link, a directory, …), with why.
    Unusable(String),
}

impl KeyAccess {
    /// How the `status` header says it.
    pub(crate) fn describe(&self) -> String {
        match self {
            KeyAccess::Absent => "absent: read-only".to_string(),
            KeyAccess::Present { readable: true, .. } => "present".to_string(),
            KeyAccess::Present {
                readable: false, ..
            } => "present, not readable by you".to_string(),
            KeyAccess::Unusable(why) => format!("unusable: {why}"),
        }
    }

    /// `present`, `not_readable`, `absent` or `unusable`, for machines.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            KeyAccess::Absent => "absent",
            KeyAccess::Present { readable: true, .. } => "present",
            KeyAccess::Present { .. } => "not_readable",
            KeyAccess::Unusable(_) => "unusable",
        }
    }

    /// A warning when group or others may read the key (docs/design.md §1).
    pub(crate) fn warning(&self, path: &Path) -> Option<String> {
        match self {
            KeyAccess::Present { mode, .. } if mode & 0o044 != 0 => Some(format!(
                "CA key {} is readable by {} (mode {:04o}): only its owner should read it \
                 (chmod 600)",
                path.display(),
                match (mode & 0o040 != 0, mode & 0o004 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                },
                mode & 0o7777
            )),
            _ => None,
        }
    }
}

/// Looks at `path` without opening it: absent, a regular file (readable by us or not, and its
/// mode), or something else.
fn key_access(path: &Path) -> KeyAccess {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return KeyAccess::Absent,
        Err(e) => return KeyAccess::Unusable(format!("cannot be inspected: {e}")),
        Ok(meta) => meta,
    };
    if meta.file_type().is_symlink() {
        return KeyAccess::Unusable("is a symbolic link".to_string());
    }
    if !meta.is_file() {
        return KeyAccess::Unusable("is not a regular file".to_string());
    }
    let readable = std::ffi::CString::new(path.as_os_str().as_bytes())
        // SAFETY: a NUL-terminated path; access(2) reads it and keeps nothing.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::R_OK) } == 0)
        .unwrap_or(false);
    KeyAccess::Present {
        readable,
        mode: meta.permissions().mode(),
    }
}

/// The JWT algorithm fixed by a CA key type (docs/design.md §2).
pub(crate) fn jwt_alg_for(alg: KeyAlg) -> jsonwebtoken::Algorithm {
    match alg {
        KeyAlg::Rsa { .. } => jsonwebtoken::Algorithm::RS256,
        KeyAlg::P256 => jsonwebtoken::Algorithm::ES256,
        KeyAlg::P384 => jsonwebtoken::Algorithm::ES384,
        KeyAlg::Ed25519 => jsonwebtoken::Algorithm::EdDSA,
    }
}

/// Loads `<root>/ca/ca.crt` and looks at `<root>/ca/ca.key` without reading it.
pub(crate) fn load(root: &Path) -> Result<Ca> {
    let ca_dir = super::CaDir::of(root);
    let (dir, pair) = (ca_dir.path(), ca_dir.active());
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("failed to find the CA directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symbolic link is refused)",
            dir.display()
        );
    }
    let cert_path = pair.cert;
    let cert_pem = match fsio::read_credential(&cert_path) {
        Slot::Present(bytes) => bytes,
        Slot::Absent => bail!("CA certificate {} is missing", cert_path.display()),
        Slot::Unusable(why) => bail!("CA certificate {} {why}", cert_path.display()),
        Slot::NotReadable => bail!("CA certificate {} {}", cert_path.display(), fsio::NOT_READABLE),
    };
    let mut ca =
        from_pem(&cert_pem, None).with_context(|| format!("CA in {} is unusable", dir.display()))?;
    ca.key = key_access(&pair.key);
    Ok(ca)
}

/// Builds the CA from its certificate and, optionally, its private key (both PEM; a key given
/// must belong to the certificate).
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
    let leaf_verifier = leaf_verifier(public.alg, &public.bits);
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
        key: match key_pem {
            Some(_) => KeyAccess::Present {
                readable: true,
                mode: 0o600,
            },
            None => KeyAccess::Absent,
        },
        spki_der: cert.public_key().raw.to_vec(),
        key_id: Digest::of(cert.public_key().raw),
        subject_key_id: subject_key_id(&cert),
        decoding_key,
        leaf_verifier,
    })
}

/// The certificate's subject key identifier, or RFC 5280's method 1 (SHA-1 of the key's bits).
fn subject_key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;
    if let Ok(Some(ext)) = cert.get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        && let ParsedExtension::SubjectKeyIdentifier(id) = ext.parsed_extension()
    {
        return id.0.to_vec();
    }
    let bits = cert.public_key().subject_public_key.data.as_ref();
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
        .as_ref()
        .to_vec()
}

/// The CA's public key parsed once for the signature algorithm of the leaves it signs.
fn leaf_verifier(alg: KeyAlg, public: &[u8]) -> Option<(Oid<'static>, ParsedPublicKey)> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256,
        VerificationAlgorithm,
    };
    use x509_parser::oid_registry::{
        OID_PKCS1_SHA256WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    };
    let (oid, params): (_, &'static dyn VerificationAlgorithm) = match alg {
        KeyAlg::Rsa { .. } => (OID_PKCS1_SHA256WITHRSA, &RSA_PKCS1_2048_8192_SHA256),
        KeyAlg::P256 => (OID_SIG_ECDSA_WITH_SHA256, &ECDSA_P256_SHA256_ASN1),
        KeyAlg::P384 => (OID_SIG_ECDSA_WITH_SHA384, &ECDSA_P384_SHA384_ASN1),
        KeyAlg::Ed25519 => return None,
    };
    ParsedPublicKey::new(params, public).ok().map(|key| (oid, key))
}

impl Ca {
    /// Whether `ca/ca.key` is there for this user to read.
    #[cfg_attr(not(feature = "testkit"), expect(dead_code, reason = "the tests use it"))]
    pub fn has_key(&self) -> bool {
        matches!(self.key, KeyAccess::Present { readable: true, .. })
    }

    /// Whether `cert` was signed by this CA: same issuer name and a signature that verifies.
    pub(crate) fn issued(&self, cert: &X509Certificate<'_>) -> bool {
        if cert.issuer().as_raw() != self.subject_der.as_slice() {
            return false;
        }
        if let Some((oid, key)) = &self.leaf_verifier
            && cert.signature_algorithm.algorithm == *oid
        {
            return key
                .verify_sig(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
                .is_ok();
        }
        let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&self.spki_der) else {
            return false;
        };
        cert.verify_signature(Some(&spki)).is_ok()
    }

    /// SHA-256 of the CA's SubjectPublicKeyInfo: the `kid` of every token it signs, and (its
    /// first 16 hex digits) the name of its certificate once retired.
    pub(crate) fn key_id(&self) -> Digest {
        self.key_id
    }

    pub fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding_key
    }
}

/// Seconds since the epoch as a UTC instant, saturating at the representable range.
pub(crate) fn to_utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}
