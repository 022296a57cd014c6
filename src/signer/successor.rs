//! A CA's successor, made for a staged CA rotation (`rekey ca begin`): the old CA's subject
//! with a new common name, a new key (the old one's algorithm unless told otherwise), a random
//! serial, `basicConstraints CA:TRUE`, `keyCertSign`, and subject and authority key
//! identifiers. What is made is read back through [`from_pem`](crate::ca::from_pem) and the signer's
//! own checks before anyone may write it, as an imported CA is.

use chrono::{DateTime, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, DnValue, IsCa, KeyUsagePurpose, SerialNumber,
};
use x509_parser::prelude::X509Name;
use zeroize::Zeroizing;

use crate::issue;
use crate::keys::{self, KeyAlg, KeyFormat};
use crate::problem::Problem;

/// The longest common name X.509 allows (`ub-common-name`).
const MAX_COMMON_NAME: usize = 64;

/// A CA certificate with its private key, as PEM: what `ca/next/` holds.
pub(crate) struct CaPair {
    pub(crate) cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for CaPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaPair([secret key elided])")
    }
}

impl CaPair {
    /// A pair given as PEM (an imported CA). Checked by `ca::check_import`, not here.
    pub(crate) fn from_parts(cert_pem: String, key_pem: Zeroizing<String>) -> CaPair {
        CaPair { cert_pem, key_pem }
    }

    /// The private key's PEM: a secret, for the file that holds it and nothing else.
    pub(crate) fn key_pem(&self) -> &[u8] {
        self.key_pem.as_bytes()
    }
}

/// What a successor CA is made of.
#[derive(Debug, Clone)]
pub(crate) struct Terms {
    pub(crate) alg: KeyAlg,
    pub(crate) common_name: String,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

/// The successor's common name: the old one with the new CA's start date, replacing a date an
/// earlier rotation put there (`issuing CA` → `issuing CA 2026-12-06` → `issuing CA 2027-08-01`),
/// shortened to fit X.509's 64 characters.
pub(crate) fn successor_name(old: &str, start: DateTime<Utc>) -> String {
    let is_date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
    let base = match old.rsplit_once(' ') {
        _ if is_date(old) => "",
        Some((base, last)) if is_date(last) => base,
        _ => old,
    };
    let date = start.format("%Y-%m-%d").to_string();
    let room = MAX_COMMON_NAME - date.len() - 1;
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    let base = base[..end].trim_end();
    if base.is_empty() {
        date
    } else {
        format!("{base} {date}")
    }
}

/// Makes a self-signed CA with the old CA's subject (every attribute, in order, with its string
/// type) but for the common name `terms` gives.
pub(crate) fn successor(old_subject: &X509Name<'_>, terms: &Terms) -> Result<CaPair, Problem> {
    if terms.common_name.is_empty() || terms.common_name.chars().count() > MAX_COMMON_NAME {
        return Err(Problem::new(format!(
            "a CA's common name has 1 to {MAX_COMMON_NAME} characters"
        )));
    }
    if terms.not_after <= terms.not_before {
        return Err(Problem::new("the new CA would end before it starts"));
    }
    let mut name = issue::rebuild_name(old_subject).map_err(|e| {
        Problem::new(format!(
            "the current CA's {e}; import a CA made elsewhere (--import-cert, --import-key)"
        ))
    })?;
    name.push(DnType::CommonName, DnValue::Utf8String(terms.common_name.clone()));
    let key = keys::generate_key(terms.alg).map_err(|e| Problem::new(format!("{e:#}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let serial = issue::random_serial().map_err(|e| Problem::new(format!("{e:#}")))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = offset(terms.not_before)?;
    params.not_after = offset(terms.not_after)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Problem::new(format!("failed to sign the new CA: {e}")))?;
    let key_pem = keys::encode_key(&key, terms.alg, KeyFormat::Pkcs8)
        .map_err(|e| Problem::new(format!("{e:#}")))?;
    Ok(CaPair {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key_pem),
    })
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Problem> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|_| Problem::new(format!("{t} cannot be written in a certificate")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn a_successor_name_carries_one_start_date() {
        let start = at(2026, 12, 6);
        assert_eq!(successor_name("issuing CA", start), "issuing CA 2026-12-06");
        assert_eq!(
            successor_name("issuing CA 2025-12-01", start),
            "issuing CA 2026-12-06"
        );
        assert_eq!(successor_name("CA 2025-13-01", start), "CA 2025-13-01 2026-12-06");
        let long = "é".repeat(70);
        let name = successor_name(&long, start);
        assert!(name.chars().count() <= MAX_COMMON_NAME, "{name}");
        assert!(name.ends_with(" 2026-12-06"));
        assert_eq!(successor_name("2025-01-01", start), "2026-12-06");
    }
}
