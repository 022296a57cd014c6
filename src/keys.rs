//! Key algorithms rekey supports and the public half of a key, from either side: a certificate's
//! SubjectPublicKeyInfo or a private key file (PKCS#8, PKCS#1 or SEC1 PEM).
//!
//! Reading a key file only derives its public key; the private bytes are dropped. New key pairs
//! are generated here and encoded in the format of the file they replace. Signing lives with the
//! code that writes (issue and token).

use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;

use anyhow::{Context, Result, bail};
use rcgen::KeyPair;

use crate::pemblock;

/// A key algorithm rekey can verify with and issue for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlg {
    Rsa { bits: u32 },
    P256,
    P384,
    Ed25519,
}

impl std::fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlg::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlg::P256 => f.write_str("P-256"),
            KeyAlg::P384 => f.write_str("P-384"),
            KeyAlg::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// A public key: its algorithm and the bytes of the SubjectPublicKeyInfo bit string
/// (RSAPublicKey DER, an uncompressed EC point, or the raw Ed25519 key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub alg: KeyAlg,
    pub bits: Vec<u8>,
}

/// Reads the algorithm and key of a certificate's SubjectPublicKeyInfo.
pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
    let oid = &spki.algorithm.algorithm;
    let bits = spki.subject_public_key.data.to_vec();
    let alg = if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyAlg::Rsa {
                bits: rsa.key_size() as u32,
            },
            _ => return Err("has a malformed RSA public key".to_string()),
        }
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => KeyAlg::P256,
            Some(c) if c == OID_NIST_EC_P384 => KeyAlg::P384,
            Some(c) => return Err(format!("has an unsupported elliptic curve ({c})")),
            None => return Err("has an EC key without a named curve".to_string()),
        }
    } else if *oid == OID_SIG_ED25519 {
        KeyAlg::Ed25519
    } else {
        return Err(format!("has an unsupported key algorithm ({oid})"));
    };
    Ok(PublicKey { alg, bits })
}

/// Parses a private key file and returns its public key. The error is a sentence fragment that
/// follows the file name ("key.pem is encrypted ...").
pub fn public_from_private_pem(bytes: &[u8]) -> Result<PublicKey, String> {
    let block = pemblock::single(bytes)?;
    let der = &block.der;
    let parsed = match block.label.as_str() {
        "PRIVATE KEY" => from_pkcs8(der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(der).ok().map(|k| rsa_public(&k)),
        "EC PRIVATE KEY" => from_sec1(der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err("is an encrypted private key, which rekey cannot use".to_string());
        }
        other => return Err(format!("holds a {other} block, not a private key")),
    };
    parsed.ok_or_else(|| {
        "holds a private key rekey cannot read (unsupported algorithm or malformed)".to_string()
    })
}

fn from_pkcs8(der: &[u8]) -> Option<PublicKey> {
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der) {
        return Some(PublicKey {
            alg: KeyAlg::P256,
            bits: k.public_key().as_ref().to_vec(),
        });
    }
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der) {
        return Some(PublicKey {
            alg: KeyAlg::P384,
            bits: k.public_key().as_ref().to_vec(),
        });
    }
    if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Some(PublicKey {
            alg: KeyAlg::Ed25519,
            bits: k.public_key().as_ref().to_vec(),
        });
    }
    RsaKeyPair::from_pkcs8(der).ok().map(|k| rsa_public(&k))
}

fn from_sec1(der: &[u8]) -> Option<PublicKey> {
    let p256 = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let p384 = &signature::ECDSA_P384_SHA384_ASN1_SIGNING;
    if let Ok(k) = EcdsaKeyPair::from_private_key_der(p256, der) {
        return Some(PublicKey {
            alg: KeyAlg::P256,
            bits: k.public_key().as_ref().to_vec(),
        });
    }
    EcdsaKeyPair::from_private_key_der(p384, der)
        .ok()
        .map(|k| PublicKey {
            alg: KeyAlg::P384,
            bits: k.public_key().as_ref().to_vec(),
        })
}

fn rsa_public(key: &RsaKeyPair) -> PublicKey {
    PublicKey {
        alg: KeyAlg::Rsa {
            bits: (key.public_modulus_len() * 8) as u32,
        },
        bits: key.public_key().as_ref().to_vec(),
    }
}

/// How a private key file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    /// PKCS#1 for RSA, SEC1 for EC; Ed25519 has only PKCS#8.
    Traditional,
}

/// A fresh key pair of `alg`.
pub fn generate_key(alg: KeyAlg) -> Result<KeyPair> {
    let key = match alg {
        KeyAlg::Rsa { bits } => {
            let size = match bits {
                2048 => rcgen::RsaKeySize::_2048,
                3072 => rcgen::RsaKeySize::_3072,
                4096 => rcgen::RsaKeySize::_4096,
                other => bail!("cannot generate RSA-{other} keys (2048, 3072 or 4096)"),
            };
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        }
        KeyAlg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlg::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
    };
    key.with_context(|| format!("failed to generate a {alg} key"))
}

/// The private key as PEM in the requested encoding.
pub fn encode_key(key: &KeyPair, alg: KeyAlg, format: KeyFormat) -> Result<String> {
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
    let (label, der) = match (format, alg) {
        (_, KeyAlg::Ed25519) => {
            // aws-lc writes Ed25519 as PKCS#8 v2 (RFC 5958, with the public key), which OpenSSL
            // 3.0 cannot read; v1 is what every consumer accepts.
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.serialized_der())
                .map_err(|_| anyhow::anyhow!("failed to re-read a generated Ed25519 key"))?;
            let v1 = pair
                .to_pkcs8v1()
                .map_err(|_| anyhow::anyhow!("failed to encode an Ed25519 key"))?;
            ("PRIVATE KEY", v1.as_ref().to_vec())
        }
        (KeyFormat::Pkcs8, _) => return Ok(key.serialize_pem()),
        (KeyFormat::Traditional, KeyAlg::Rsa { .. }) => {
            ("RSA PRIVATE KEY", pkcs1_from_pkcs8(key.serialized_der())?)
        }
        (KeyFormat::Traditional, KeyAlg::P256 | KeyAlg::P384) => {
            let signing = if alg == KeyAlg::P256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING
            };
            let pair =
                aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(signing, key.serialized_der())
                    .map_err(|_| anyhow::anyhow!("failed to re-read a generated EC key"))?;
            let sec1: EcPrivateKeyRfc5915Der<'_> = pair
                .private_key()
                .as_der()
                .map_err(|_| anyhow::anyhow!("failed to encode an EC key"))?;
            ("EC PRIVATE KEY", sec1.as_ref().to_vec())
        }
    };
    Ok(pem::encode(&pem::Pem::new(label, der)).replace("\r\n", "\n"))
}

/// PKCS#8's privateKey octet string holds the PKCS#1 RSAPrivateKey.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>> {
    use x509_parser::der_parser::parse_der;
    let (_, obj) = parse_der(pkcs8).map_err(|e| anyhow::anyhow!("bad PKCS#8: {e}"))?;
    let fields = obj
        .as_sequence()
        .map_err(|e| anyhow::anyhow!("bad PKCS#8: {e}"))?;
    let inner = fields.get(2).context("bad PKCS#8: no privateKey")?;
    Ok(inner
        .as_slice()
        .map_err(|e| anyhow::anyhow!("bad PKCS#8: {e}"))?
        .to_vec())
}
