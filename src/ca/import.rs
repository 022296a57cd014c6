//! A CA made elsewhere, for `rekey ca begin --import-cert F --import-key F` (an enterprise CA's
//! intermediate, say): checked whole before anything is written. It must be what
//! [`from_pem`] accepts of `ca/ca.crt` with its key (a CA, a supported key type,
//! the key its own), say outright that it may sign certificates (`keyUsage` with
//! `keyCertSign`), and be valid from now until the end of the window a rotation needs.

use chrono::{DateTime, Utc};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert::{Ca, from_pem};
use crate::pemblock;
use crate::problem::Problem;

/// The time an imported CA must cover: from `now` to at least `until`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needed {
    pub(crate) now: DateTime<Utc>,
    pub(crate) until: DateTime<Utc>,
    /// Days from `now` to `until`, as the policy names them, for the message.
    pub(crate) days: i64,
}

/// Checks an imported CA certificate and key (both PEM), naming every way it falls short.
pub(crate) fn check(cert_pem: &[u8], key_pem: &[u8], needed: Needed) -> Result<Ca, Vec<Problem>> {
    let ca = from_pem(cert_pem, Some(key_pem)).map_err(|e| vec![Problem::new(format!("{e:#}"))]);
    let mut problems = Vec::new();
    // from_pem has parsed it; what it leaves open (an absent key usage) is refused here.
    if let Ok(block) = pemblock::single(cert_pem)
        && let Ok((_, cert)) = X509Certificate::from_der(&block.der)
        && !matches!(cert.key_usage(), Ok(Some(_)))
    {
        problems.push(Problem::new(
            "the certificate has no keyUsage extension: a CA rekey signs with must name \
             keyCertSign",
        ));
    }
    let ca = match ca {
        Ok(ca) => ca,
        Err(mut first) => {
            first.append(&mut problems);
            return Err(first);
        }
    };
    if ca.not_before > needed.now {
        problems.push(Problem::new(format!(
            "the certificate is not valid until {}",
            ca.not_before.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    }
    if ca.not_after < needed.until {
        problems.push(Problem::new(format!(
            "the certificate ends on {}, before {}: a CA must be valid for at least {} days \
             (ca_rotate_before_days + validity_days) to issue full-length credentials",
            ca.not_after.format("%Y-%m-%d"),
            needed.until.format("%Y-%m-%d"),
            needed.days
        )));
    }
    if problems.is_empty() {
        Ok(ca)
    } else {
        Err(problems)
    }
}
