//! Key algorithms rekey supports and the public half of a key, from either side: a certificate's
//! SubjectPublicKeyInfo or a private key file (PKCS#8, PKCS#1 or SEC1 PEM).
//!
//! Reading a key file only derives its public key; the private bytes are dropped. New key pairs
//! are generated here and encoded in the format of the file they replace. Signing lives with the
//! code that writes (issue and token).

use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use x509_parser::asn1_rs::Oid;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;

use anyhow::{Context, Result, bail};
use rcgen::KeyPair;

use crate::pemblock;
use crate::problem::Problem;

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
    pub(crate) bits: Vec<u8>,
}

/// Reads the algorithm and key of a certificate's SubjectPublicKeyInfo.
pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, Problem> {
    let oid = &spki.algorithm.algorithm;
    let bits = spki.subject_public_key.data.to_vec();
    let alg = if *oid == OID_PKCS1_RSAENCRYPTION {
        let modulus = der::sequence(&bits).and_then(|fields| fields.first().map(|f| f.data));
        KeyAlg::Rsa {
            bits: rsa_bits(modulus.ok_or("has a malformed RSA public key")?),
        }
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) => {
                ec_curve(&c).ok_or_else(|| format!("has an unsupported elliptic curve ({c})"))?
            }
            None => return Err(Problem::new("has an EC key without a named curve")),
        }
    } else if *oid == OID_SIG_ED25519 {
        KeyAlg::Ed25519
    } else {
        return Err(Problem::new(format!("has an unsupported key algorithm ({oid})")));
    };
    Ok(PublicKey { alg, bits })
}

fn ec_curve(oid: &Oid<'_>) -> Option<KeyAlg> {
    if *oid == OID_EC_P256 {
        Some(KeyAlg::P256)
    } else if *oid == OID_NIST_EC_P384 {
        Some(KeyAlg::P384)
    } else {
        None
    }
}

/// The size of an RSA modulus in bits (its big-endian bytes, leading zeros ignored).
fn rsa_bits(modulus: &[u8]) -> u32 {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let significant = &modulus[start..];
    match significant.first() {
        Some(first) => (significant.len() * 8) as u32 - first.leading_zeros(),
        None => 0,
    }
}

/// Parses a private key file and returns its public key. The error is a sentence fragment that
/// follows the file name ("key.pem is encrypted ...").
///
/// The public key is the one the file declares (an RSA key's modulus and exponent, the EC point
/// SEC1 and PKCS#8 v2 carry): reading it costs no arithmetic, which matters at 10^5 identities.
/// A file that declares none (Ed25519 PKCS#8 v1, SEC1 without the optional point) has it derived.
/// rekey never signs with a service's private key: rotation makes a new one, and reuse keeps the
/// certificate's public key.
pub fn public_from_private_pem(bytes: &[u8]) -> Result<PublicKey, Problem> {
    let block = pemblock::single(bytes)?;
    let der = &block.der;
    let parsed = match block.label.as_str() {
        "PRIVATE KEY" => from_pkcs8(der),
        "RSA PRIVATE KEY" => from_pkcs1(der),
        "EC PRIVATE KEY" => from_sec1(der, None),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(Problem::new("is an encrypted private key, which rekey cannot use"));
        }
        other => return Err(Problem::new(format!("holds a {other} block, not a private key"))),
    };
    parsed.ok_or_else(|| {
        Problem::new("holds a private key rekey cannot read (unsupported algorithm or malformed)")
    })
}

/// PKCS#8: version, algorithm, the inner key, optional attributes [0], optional public key [1].
fn from_pkcs8(der: &[u8]) -> Option<PublicKey> {
    let fields = der::sequence(der)?;
    let (alg, inner) = (fields.get(1)?, fields.get(2)?);
    let alg = der::sequence_of(alg)?;
    let oid = der::oid(alg.first()?)?;
    let declared = fields
        .iter()
        .skip(3)
        .find(|f| der::is_context(f, 1))
        .and_then(|f| der::bit_string_data(f.data));
    if oid == OID_PKCS1_RSAENCRYPTION {
        from_pkcs1(inner.data)
    } else if oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = ec_curve(&der::oid(alg.get(1)?)?)?;
        from_sec1(inner.data, Some(curve))
    } else if oid == OID_SIG_ED25519 {
        match declared {
            Some(bits) if bits.len() == 32 => Some(PublicKey {
                alg: KeyAlg::Ed25519,
                bits: bits.to_vec(),
            }),
            _ => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .ok()
                .map(|k| PublicKey {
                    alg: KeyAlg::Ed25519,
                    bits: k.public_key().as_ref().to_vec(),
                }),
        }
    } else {
        None
    }
}

/// PKCS#1 RSAPrivateKey: version, modulus, public exponent, ... The public key is the DER
/// RSAPublicKey of the modulus and exponent, as a certificate holds it.
fn from_pkcs1(der: &[u8]) -> Option<PublicKey> {
    let fields = der::sequence(der)?;
    let (modulus, exponent) = (fields.get(1)?, fields.get(2)?);
    if fields.len() < 9 || !der::is_integer(modulus) || !der::is_integer(exponent) {
        return None;
    }
    let mut body = modulus.raw.to_vec();
    body.extend_from_slice(exponent.raw);
    Some(PublicKey {
        alg: KeyAlg::Rsa {
            bits: rsa_bits(modulus.data),
        },
        bits: der::wrap_sequence(&body),
    })
}

/// SEC1 ECPrivateKey: version 1, the private scalar, optional curve [0], optional point [1].
fn from_sec1(der: &[u8], outer_curve: Option<KeyAlg>) -> Option<PublicKey> {
    let fields = der::sequence(der)?;
    let scalar = fields.get(1)?;
    let named = fields
        .iter()
        .find(|f| der::is_context(f, 0))
        .and_then(|f| der::oid_in(f.data))
        .and_then(|o| ec_curve(&o));
    let alg = named.or(outer_curve).or(match scalar.data.len() {
        32 => Some(KeyAlg::P256),
        48 => Some(KeyAlg::P384),
        _ => None,
    })?;
    let point_len = if alg == KeyAlg::P256 { 65 } else { 97 };
    let declared = fields
        .iter()
        .find(|f| der::is_context(f, 1))
        .and_then(|f| der::explicit_bit_string(f.data));
    match declared {
        Some(point) if point.len() == point_len && point[0] == 0x04 => Some(PublicKey {
            alg,
            bits: point.to_vec(),
        }),
        _ => derive_ec(der, alg),
    }
}

/// Derives the public point of a SEC1 key that does not declare it (costs a scalar multiplication).
fn derive_ec(sec1: &[u8], alg: KeyAlg) -> Option<PublicKey> {
    let signing = if alg == KeyAlg::P256 {
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING
    } else {
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING
    };
    EcdsaKeyPair::from_private_key_der(signing, sec1)
        .ok()
        .map(|k| PublicKey {
            alg,
            bits: k.public_key().as_ref().to_vec(),
        })
}

/// Just enough DER to read key structures: one element's tag, content and whole encoding.
mod der {
    use x509_parser::asn1_rs::{Any, Class, FromDer, Oid, Tag};

    pub(crate) struct Element<'a> {
        pub(crate) class: Class,
        pub(crate) tag: Tag,
        pub(crate) data: &'a [u8],
        pub(crate) raw: &'a [u8],
    }

    fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
        let (rest, any) = Any::from_der(input).ok()?;
        let raw = &input[..input.len() - rest.len()];
        Some((
            Element {
                class: any.class(),
                tag: any.tag(),
                data: any.data,
                raw,
            },
            rest,
        ))
    }

    /// The elements of the SEQUENCE that is the whole of `input`.
    pub(crate) fn sequence(input: &[u8]) -> Option<Vec<Element<'_>>> {
        let (seq, rest) = element(input)?;
        if !rest.is_empty() || seq.tag != Tag::Sequence || seq.class != Class::Universal {
            return None;
        }
        elements(seq.data)
    }

    /// The elements of a SEQUENCE element.
    pub(crate) fn sequence_of<'a>(e: &Element<'a>) -> Option<Vec<Element<'a>>> {
        (e.tag == Tag::Sequence && e.class == Class::Universal)
            .then(|| elements(e.data))
            .flatten()
    }

    fn elements(mut data: &[u8]) -> Option<Vec<Element<'_>>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let (e, rest) = element(data)?;
            out.push(e);
            data = rest;
        }
        Some(out)
    }

    pub(crate) fn oid<'a>(e: &Element<'a>) -> Option<Oid<'a>> {
        (e.tag == Tag::Oid && e.class == Class::Universal)
            .then(|| Oid::new(std::borrow::Cow::Borrowed(e.data)))
    }

    /// The OID that is the whole of `data` (an EXPLICIT [0] parameters field).
    pub(crate) fn oid_in(data: &[u8]) -> Option<Oid<'_>> {
        let (e, rest) = element(data)?;
        if rest.is_empty() { oid(&e) } else { None }
    }

    pub(crate) fn is_integer(e: &Element<'_>) -> bool {
        e.tag == Tag::Integer && e.class == Class::Universal
    }

    pub(crate) fn is_context(e: &Element<'_>, n: u32) -> bool {
        e.class == Class::ContextSpecific && e.tag == Tag(n)
    }

    /// The bits of a BIT STRING's content with no unused bits.
    pub(crate) fn bit_string_data(data: &[u8]) -> Option<&[u8]> {
        match data.split_first() {
            Some((0, bits)) => Some(bits),
            _ => None,
        }
    }

    /// The bits of the BIT STRING that is the whole of `data` (an EXPLICIT [1] field).
    pub(crate) fn explicit_bit_string(data: &[u8]) -> Option<&[u8]> {
        let (e, rest) = element(data)?;
        (rest.is_empty() && e.tag == Tag::BitString && e.class == Class::Universal)
            .then(|| bit_string_data(e.data))
            .flatten()
    }

    /// `body` wrapped as the content of a SEQUENCE.
    pub(crate) fn wrap_sequence(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0x30];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
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
pub(crate) fn generate_key(alg: KeyAlg) -> Result<KeyPair> {
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
pub(crate) fn encode_key(key: &KeyPair, alg: KeyAlg, format: KeyFormat) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn every_key_file_format_yields_the_public_key_it_belongs_to() {
        let cases = [
            (KeyAlg::P256, KeyFormat::Pkcs8),
            (KeyAlg::P256, KeyFormat::Traditional),
            (KeyAlg::P384, KeyFormat::Pkcs8),
            (KeyAlg::P384, KeyFormat::Traditional),
            (KeyAlg::Ed25519, KeyFormat::Pkcs8),
            (KeyAlg::Rsa { bits: 2048 }, KeyFormat::Pkcs8),
            (KeyAlg::Rsa { bits: 3072 }, KeyFormat::Traditional),
        ];
        for (alg, format) in cases {
            let pair = generate_key(alg).unwrap();
            let pem = encode_key(&pair, alg, format).unwrap();
            let public = public_from_private_pem(pem.as_bytes()).unwrap();
            assert_eq!(public.alg, alg, "{alg} {format:?}");
            assert_eq!(public.bits, pair.der_bytes(), "{alg} {format:?}");
            // rcgen's own PKCS#8 (v2 for Ed25519) reads the same.
            assert_eq!(
                public_from_private_pem(pair.serialize_pem().as_bytes()).unwrap(),
                public,
                "{alg}"
            );
        }
    }

    #[test]
    fn unusable_key_files_are_refused_with_a_reason() {
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAEC\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n";
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAECAwQ=\n-----END PRIVATE KEY-----\n";
        let cases = [
            (encrypted, "is an encrypted private key"),
            (public, "holds a PUBLIC KEY block, not a private key"),
            (garbage, "holds a private key rekey cannot read"),
        ];
        for (pem, want) in cases {
            let err = public_from_private_pem(pem.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn rsa_sizes_count_significant_bits() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x7f, 0xff]), 15);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
