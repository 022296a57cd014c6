//! Reissuing a certificate: the old certificate's subject (byte for byte) and every extension
//! (criticality and value as they were), a new random serial, the new validity, the subject key
//! given, signed by the CA. The result is parsed back and checked before anyone may write it.
//!
//! The subject key identifier is the one extension that changes, and only with the key. Pure
//! but for the signature itself: serial and key are chosen by the caller.

use aws_lc_rs::digest;
use chrono::{DateTime, Utc};
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa, Issuer, KeyPair,
    PublicKeyData, SerialNumber,
};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::ca::{Ca, to_utc};
use crate::keys::{self, PublicKey};
use crate::problem::Problem;

/// What the caller fixes about a new certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms {
    pub(crate) serial: [u8; 16],
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

/// Rebuilds an X.509 name as rcgen parameters, keeping each value's string type. Refuses what
/// rcgen cannot write back as it was: several attributes in one RDN, a repeated attribute type,
/// a string type rcgen does not write.
pub(crate) fn rebuild_name(name: &X509Name<'_>) -> Result<DistinguishedName, Problem> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(
                "subject has a multi-valued RDN, which cannot be reproduced exactly".into(),
            );
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("subject has an attribute type that cannot be read")?
            .collect();
        if seen.contains(&oid) {
            return Err(
                "subject repeats an attribute type, which cannot be reproduced exactly".into(),
            );
        }
        seen.push(oid.clone());
        let value = attr.attr_value();
        let data = value.data.to_vec();
        let text = || {
            String::from_utf8(data.clone())
                .map_err(|_| "subject has a malformed string".to_string())
        };
        let unsupported =
            || "subject has a string type that cannot be reproduced exactly".to_string();
        let dn_value = match value.tag().0 {
            12 => DnValue::Utf8String(text()?),
            19 => DnValue::PrintableString(
                PrintableString::try_from(text()?).map_err(|_| unsupported())?,
            ),
            22 => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(|_| unsupported())?),
            20 => {
                DnValue::TeletexString(TeletexString::try_from(text()?).map_err(|_| unsupported())?)
            }
            30 => DnValue::BmpString(BmpString::from_utf16be(data).map_err(|_| unsupported())?),
            28 => DnValue::UniversalString(
                UniversalString::from_utf32be(data).map_err(|_| unsupported())?,
            ),
            _ => return Err(Problem::new(unsupported())),
        };
        dn.push(DnType::from_oid(&oid), dn_value);
    }
    Ok(dn)
}

/// Issues the successor of `old_der` for `subject_key` under `terms`, or says why it cannot.
pub(crate) fn reissue(
    old_der: &[u8],
    subject_key: &impl PublicKeyData,
    terms: &Terms,
    issuer: &Issuer<'_, KeyPair>,
    ca: &Ca,
) -> Result<Vec<u8>, Problem> {
    let (_, old) = X509Certificate::from_der(old_der)
        .map_err(|e| format!("cannot parse the old certificate: {e}"))?;
    let new_public = subject_key.der_bytes();
    let same_key = old.public_key().subject_public_key.data.as_ref() == new_public;
    let mut params = CertificateParams::default();
    params.distinguished_name = rebuild_name(old.subject())?;
    params.is_ca = IsCa::NoCa; // basicConstraints, like every extension, is copied as it was
    params.serial_number = Some(SerialNumber::from_slice(&terms.serial));
    params.not_before = offset(terms.not_before)?;
    params.not_after = offset(terms.not_after)?;
    for ext in old.extensions() {
        let oid: Vec<u64> = ext
            .oid
            .iter()
            .ok_or("certificate has an unreadable extension OID")?
            .collect();
        let value = if ext.oid == OID_X509_EXT_SUBJECT_KEY_IDENTIFIER && !same_key {
            key_identifier(new_public)
        } else if ext.oid == OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
            && names_another_ca(ext.parsed_extension(), ca)
        {
            // Issued by another CA (before a CA rotation's switch): name the one that signs now.
            authority_key_identifier(&ca.subject_key_id)
        } else {
            ext.value.to_vec()
        };
        let mut custom = CustomExtension::from_oid_content(&oid, value);
        custom.set_criticality(ext.critical);
        params.custom_extensions.push(custom);
    }
    let cert = params
        .signed_by(subject_key, issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    let der = cert.der().to_vec();
    check(&old, &der, new_public, terms, ca)?;
    Ok(der)
}

/// Whether an authority key identifier names a key other than `ca`'s.
fn names_another_ca(aki: &ParsedExtension<'_>, ca: &Ca) -> bool {
    match aki {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki
            .key_identifier
            .as_ref()
            .is_some_and(|id| id.0 != ca.subject_key_id.as_slice()),
        _ => false,
    }
}

/// An authority key identifier naming `key_id`: `SEQUENCE { [0] IMPLICIT OCTET STRING }`.
fn authority_key_identifier(key_id: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x80];
    der_length(&mut inner, key_id.len());
    inner.extend_from_slice(key_id);
    let mut der = vec![0x30];
    der_length(&mut der, inner.len());
    der.extend_from_slice(&inner);
    der
}

/// A DER length (key identifiers are short; the long form covers anything else).
fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// RFC 5280 method 1: SHA-1 of the subject public key bits, as an OCTET STRING.
fn key_identifier(public_key_bits: &[u8]) -> Vec<u8> {
    let id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, public_key_bits);
    let mut der = vec![0x04, id.as_ref().len() as u8];
    der.extend_from_slice(id.as_ref());
    der
}

/// The new certificate is what was meant: same subject and extensions (the key identifier
/// aside), new serial, the terms' dates, the expected key, signed by the CA.
fn check(
    old: &X509Certificate<'_>,
    der: &[u8],
    public: &[u8],
    terms: &Terms,
    ca: &Ca,
) -> Result<(), Problem> {
    let fail = |what: &str| {
        Err(Problem::new(format!(
            "the reissued certificate {what}: refusing to write it"
        )))
    };
    let Ok((rest, new)) = X509Certificate::from_der(der) else {
        return fail("does not parse");
    };
    if !rest.is_empty() {
        return fail("has trailing data");
    }
    if new.subject().as_raw() != old.subject().as_raw() {
        return Err(Problem::new("subject cannot be reproduced exactly by the issuer library: refusing to change the identity"));
    }
    if !ca.issued(&new) {
        return fail("does not verify with the CA");
    }
    if new.raw_serial() == old.raw_serial() {
        return fail("has the old serial");
    }
    let v = new.validity();
    if to_utc(v.not_before.timestamp()) != terms.not_before
        || to_utc(v.not_after.timestamp()) != terms.not_after
    {
        return fail("has the wrong dates");
    }
    if new.public_key().subject_public_key.data.as_ref() != public {
        return fail("has the wrong key");
    }
    // The key identifiers aside (the subject's changes with its key, the authority's with the
    // CA), every extension is as it was.
    let strip = |c: &X509Certificate<'_>| -> Vec<(String, bool, Vec<u8>)> {
        c.extensions()
            .iter()
            .filter(|e| e.oid != OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
            .filter(|e| e.oid != OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .map(|e| (e.oid.to_id_string(), e.critical, e.value.to_vec()))
            .collect()
    };
    let authority = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find(|e| e.oid == OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .map(|e| (e.critical, names_another_ca(e.parsed_extension(), ca)))
    };
    let kept = |(critical, _): (bool, bool)| critical;
    if strip(&new) != strip(old)
        || authority(&new).map(kept) != authority(old).map(kept)
        || authority(&new).is_some_and(|(_, other)| other)
    {
        return fail("has different extensions");
    }
    Ok(())
}

/// The public key of the certificate `der`, to compare with a key file.
pub fn public_key_of(der: &[u8]) -> Result<PublicKey, Problem> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("cannot parse the certificate: {e}"))?;
    keys::from_spki(cert.public_key())
}

/// The serial number of the certificate `der`, in uppercase hex (as `openssl x509 -serial`).
pub(crate) fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(hex::encode_upper(cert.raw_serial()))
}

/// A fresh positive serial of 127 random bits (never rcgen's default, derived from the key).
pub(crate) fn random_serial() -> anyhow::Result<[u8; 16]> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(bytes)
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Problem> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|_| Problem::new("date out of range"))
}
