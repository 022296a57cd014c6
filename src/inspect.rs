//! Turns an identity's file bytes into facts: each credential's validity window and digest, or the
//! problem that makes it unusable. Pure: bytes and the CA in, facts out.
//!
//! Problems are [`Problem`]s said of the file ("cert.pem was not issued by this CA").

use chrono::{DateTime, Utc};
use x509_parser::nom::Parser as _;
use x509_parser::prelude::X509CertificateParser;

use crate::ca::{Role, Trusted, to_utc};
use crate::digest::Digest;
use crate::fsio::Slot;
use crate::keys::{self, KeyAlg};
use crate::names::IdentityId;
use crate::pemblock;
use crate::problem::Problem;
use crate::scan::{CERT_FILE, Candidate, Files, KEY_FILE, TOKEN_FILE};
use crate::token;

/// A credential's validity: `not_before`/`not_after` of a certificate, `nbf`/`exp` of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

/// What is known about one credential file that is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// SHA-256 of the file as read; `None` when it could not be read at all.
    pub(crate) sha256: Option<Digest>,
    /// The validity window, or why the credential is unusable, or that this user may not read it.
    pub facts: Facts,
    /// The validity the file states, when it was read that far: also for a certificate whose
    /// key does not match it (what status shows), `None` when nothing could be read of it.
    pub(crate) stated: Option<Window>,
    /// The certificate's key algorithm (certificates only).
    pub key_alg: Option<KeyAlg>,
    /// The certificate's subject CN and serial (certificates read through, usable or not).
    pub(crate) names: Option<CertNames>,
    /// A certificate whose `key.pem` is there but not readable by this user: the certificate is
    /// judged, the match of its key is not checked.
    pub(crate) key_not_readable: bool,
    /// Which trusted CA signed it (credentials read through only).
    pub(crate) signed_by: Option<Role>,
}

/// What a credential's file says, as far as this user could read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// Usable, valid over this window.
    Usable(Window),
    /// Unusable as found: the problem.
    Unusable(Problem),
    /// The file is there but this user may not open it: nothing is judged of it, and it is
    /// not a problem of the file (docs/design.md §5, "not readable by you").
    NotReadable,
}

impl Facts {
    /// The window of a usable credential.
    pub fn window(&self) -> Option<Window> {
        match self {
            Facts::Usable(w) => Some(*w),
            Facts::Unusable(_) | Facts::NotReadable => None,
        }
    }
}

impl From<Result<Window, Problem>> for Facts {
    fn from(facts: Result<Window, Problem>) -> Facts {
        match facts {
            Ok(w) => Facts::Usable(w),
            Err(p) => Facts::Unusable(p),
        }
    }
}

/// What the metrics name a certificate by (the labels x509-certificate-exporter uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertNames {
    /// The subject's first common name, or empty.
    pub(crate) subject_cn: String,
    /// The serial number in decimal.
    pub(crate) serial: String,
}

/// What a credential's bytes said when they could be used.
struct Read {
    window: Window,
    key_alg: Option<KeyAlg>,
    names: Option<CertNames>,
    key_not_readable: bool,
    signed_by: Role,
}

/// Why a credential's bytes cannot be used, with what was read of them before it was found
/// (a certificate whose key does not match still states its validity).
struct Unusable {
    problem: Problem,
    read: Option<Box<Read>>,
}

impl From<Problem> for Unusable {
    fn from(problem: Problem) -> Unusable {
        Unusable {
            problem,
            read: None,
        }
    }
}

/// One identity, inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub(crate) id: IdentityId,
    pub cert: Option<Credential>,
    pub token: Option<Credential>,
}

impl Inspected {
    /// An identity with neither a certificate nor a token is ignored (docs/design.md §1).
    pub(crate) fn is_empty(&self) -> bool {
        self.cert.is_none() && self.token.is_none()
    }
}

/// Inspects one identity's files against the CAs the fleet trusts.
pub fn inspect(candidate: &Candidate, files: &Files, trusted: Trusted<'_>) -> Inspected {
    if let Some(why) = &files.in_flight {
        let busy = |slot, file| {
            credential(slot, file, |_| Err(Problem::new(why.as_str()).in_file(file).into()))
        };
        return Inspected {
            id: candidate.id.clone(),
            cert: busy(&files.cert, CERT_FILE),
            token: busy(&files.token, TOKEN_FILE),
        };
    }
    let sub = candidate.id.to_string();
    Inspected {
        id: candidate.id.clone(),
        cert: credential(&files.cert, CERT_FILE, |bytes| {
            cert_window(bytes, &files.key, trusted)
        }),
        token: credential(&files.token, TOKEN_FILE, |bytes| {
            token::verify_trusted(bytes, trusted, &sub)
                .map(|(t, signed_by)| Read {
                    window: Window {
                        not_before: t.not_before,
                        not_after: t.expires,
                    },
                    key_alg: None,
                    names: None,
                    key_not_readable: false,
                    signed_by,
                })
                .map_err(|e| e.in_file(TOKEN_FILE).into())
        }),
    }
}

type Parsed = Result<Read, Unusable>;

fn credential(
    slot: &Slot,
    file: &'static str,
    parse: impl FnOnce(&[u8]) -> Parsed,
) -> Option<Credential> {
    let unread = |facts| Credential {
        sha256: None,
        facts,
        stated: None,
        key_alg: None,
        names: None,
        key_not_readable: false,
        signed_by: None,
    };
    match slot {
        Slot::Absent => None,
        Slot::Unusable(why) => Some(unread(Facts::Unusable(
            Problem::new(why.as_str()).in_file(file),
        ))),
        Slot::NotReadable => Some(unread(Facts::NotReadable)),
        Slot::Present(bytes) => {
            let sha256 = Some(Digest::of(bytes));
            let (facts, read) = match parse(bytes) {
                Ok(read) => (Facts::Usable(read.window), Some(read)),
                Err(e) => (Facts::Unusable(e.problem), e.read.map(|r| *r)),
            };
            Some(Credential {
                sha256,
                facts,
                stated: read.as_ref().map(|r| r.window),
                key_alg: read.as_ref().and_then(|r| r.key_alg),
                key_not_readable: read.as_ref().is_some_and(|r| r.key_not_readable),
                signed_by: read.as_ref().map(|r| r.signed_by),
                names: read.and_then(|r| r.names),
            })
        }
    }
}

fn cert_window(bytes: &[u8], key: &Slot, trusted: Trusted<'_>) -> Parsed {
    let (read, public) = cert_read(bytes, trusted)?;
    let key_problem = match key {
        Slot::Absent => None,
        Slot::NotReadable => {
            return Ok(Read {
                key_not_readable: true,
                ..read
            });
        }
        Slot::Unusable(why) => Some(Problem::new(why.as_str()).in_file(KEY_FILE)),
        Slot::Present(key_pem) => match keys::public_from_private_pem(key_pem) {
            Err(e) => Some(e.in_file(KEY_FILE)),
            Ok(key) if key != public => Some(
                Problem::new(format!("does not match {CERT_FILE}")).in_file(KEY_FILE),
            ),
            Ok(_) => None,
        },
    };
    match key_problem {
        None => Ok(read),
        Some(problem) => Err(Unusable {
            problem,
            read: Some(Box::new(read)),
        }),
    }
}

/// A certificate read through, and its public key; its key file not yet looked at.
fn cert_read(bytes: &[u8], trusted: Trusted<'_>) -> Result<(Read, keys::PublicKey), Problem> {
    let block = pemblock::single(bytes).map_err(|e| e.in_file(CERT_FILE))?;
    if block.label != "CERTIFICATE" {
        let what = format!("holds a {} block, not a CERTIFICATE", block.label);
        return Err(Problem::new(what).in_file(CERT_FILE));
    }
    // Extensions are compared as bytes when reissuing; judging a leaf needs none of them parsed.
    let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
    let cert = match parser.parse(&block.der) {
        Ok((rest, _)) if !rest.is_empty() => {
            let what = "has trailing data after the certificate";
            return Err(Problem::new(what).in_file(CERT_FILE));
        }
        Ok((_, cert)) => cert,
        Err(e) => {
            let what = format!("is not a valid X.509 certificate: {e}");
            return Err(Problem::new(what).in_file(CERT_FILE));
        }
    };
    let Some(signed_by) = trusted.issuer_of(&cert) else {
        let what = if trusted.is_rotating() {
            "was not issued by either CA of the CA rotation"
        } else {
            "was not issued by this CA"
        };
        return Err(Problem::new(what).in_file(CERT_FILE));
    };
    crate::issue::rebuild_name(cert.subject()).map_err(|e| e.in_file(CERT_FILE))?;
    let public = keys::from_spki(cert.public_key()).map_err(|e| e.in_file(CERT_FILE))?;
    let validity = cert.validity();
    let window = Window {
        not_before: to_utc(validity.not_before.timestamp()),
        not_after: to_utc(validity.not_after.timestamp()),
    };
    let names = CertNames {
        subject_cn: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        serial: cert.tbs_certificate.serial.to_string(),
    };
    let read = Read {
        window,
        key_alg: Some(public.alg),
        names: Some(names),
        key_not_readable: false,
        signed_by,
    };
    Ok((read, public))
}
