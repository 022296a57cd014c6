//! Rotation, the work of `apply`, `rotate` and `recover`: for each identity, check its files
//! against what was judged, issue the new certificate (and key) and token, and hand them to the
//! batch loop. What to rotate is decided before (by the fleet's judgement, narrowed by a plan).

use chrono::{DateTime, Utc};

use super::journal::{NewFile, Secret, Staged};
use super::record::run_report::{CertChange, Details, KeyChange, TokenChange};
use super::work::{NotStaged, Work};
use crate::ca::Ca;
use crate::classify::{Action, stamp};
use crate::digest::Digest;
use crate::fsio::{IdentityDir, RootDir, Slot};
use crate::issue::{self, Terms};
use crate::keys::{self, KeyFormat};
use crate::names::IdentityId;
use crate::pemblock;
use crate::policy::KeyMode;
use crate::problem::Problem;
use crate::scan::{self, CERT_FILE, KEY_FILE, TOKEN_FILE};
use crate::signer::{CaSigner, ReusedKey};
use crate::survey::{Assessed, Identity};
use crate::token::Claims;

/// One identity to rotate: for each credential present, the digest it had when judged, and
/// whether to rotate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) cert: Option<Expected>,
    pub(crate) token: Option<Expected>,
    /// The directory judged (device and inode): staging refuses any other at its name.
    pub(crate) dir: Option<crate::fsio::FileId>,
    /// Why a credential the command was asked about is not rotated (a plan asked what the fleet
    /// does not judge due, or named no line for it): the reason on the identity's report line.
    pub(crate) note: String,
}

/// A credential as judged: its digest then, what the fleet judged it, whether it is to be
/// rotated, and its expiry then (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) sha256: Digest,
    pub(crate) judged: Action,
    pub(crate) rotate: bool,
    pub(crate) not_after: Option<DateTime<Utc>>,
}

impl Target {
    /// The target of a surveyed identity whose judgement is `action` for at least one
    /// credential (`Rotate` for `rotate`, `Recover` for `recover`); with `force`, credentials
    /// judged `keep` too (an identity that needs recover or has a problem has none).
    pub(crate) fn judged(identity: &Identity, action: Action, force: bool) -> Option<Target> {
        let expected = |c: &Option<Assessed>| {
            c.as_ref().and_then(|c| {
                let judged = c.verdict.state.action();
                c.sha256.map(|sha256| Expected {
                    sha256,
                    judged,
                    rotate: judged == action || (force && judged == Action::Keep),
                    not_after: c.window.map(|w| w.not_after),
                })
            })
        };
        let target = Target {
            cert: expected(&identity.cert),
            token: expected(&identity.token),
            dir: identity.dir,
            note: String::new(),
        };
        target.rotates().then_some(target)
    }

    /// The credentials present, as judged.
    pub(crate) fn credentials(&self) -> impl Iterator<Item = &Expected> {
        self.cert.iter().chain(self.token.iter())
    }

    pub(crate) fn rotates(&self) -> bool {
        self.credentials().any(|e| e.rotate)
    }

    fn rotated(e: Option<Expected>) -> Option<Digest> {
        e.filter(|e| e.rotate).map(|e| e.sha256)
    }
}

/// What every rotation of one run shares.
pub(crate) struct Rotation<'a> {
    pub(crate) fleet: &'a RootDir,
    pub(crate) ca: &'a Ca,
    pub(crate) signer: &'a CaSigner,
    pub(crate) keys: KeyMode,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

impl Work for Rotation<'_> {
    type Item = Target;

    /// Prepares the new files of one identity.
    fn stage(&self, id: &IdentityId, t: &Target) -> Result<Staged, NotStaged> {
        let dir = open_identity(self.fleet, id)?;
        if t.dir.is_some_and(|judged| judged != dir.file_id()) {
            return Err(NotStaged::Skipped(
                "its directory was replaced since it was judged (another directory is at its \
                 name now): left alone"
                    .into(),
            ));
        }
        // The files must still be the ones judged: their digests say so. Read through the
        // handle every later step works in.
        let files = scan::read_in(dir.dir(), id, dir.path());
        if let Some(why) = &files.in_flight {
            return Err(NotStaged::Skipped(format!("its directory {why}")));
        }
        unchanged(&files.cert, t.cert, CERT_FILE)?;
        unchanged(&files.token, t.token, TOKEN_FILE)?;
        let rel = id.relative();
        let mut staged = Staged {
            id: id.clone(),
            dir,
            files: Vec::new(),
            details: Details {
                reason: t.note.clone(),
                ..Details::default()
            },
        };
        if let (Some(sha), Slot::Present(pem)) = (Target::rotated(t.cert), &files.cert) {
            let mut change = self
                .stage_cert(pem, sha, &files.key, &mut staged)
                .map_err(failed)?;
            change.path = rel.join(CERT_FILE).to_string_lossy().into_owned();
            change.old_not_after = t.cert.and_then(|e| e.not_after).map(stamp);
            staged.details.cert = Some(change);
        }
        if let Some(old) = Target::rotated(t.token) {
            let text = self.token_for(&id.to_string()).map_err(failed)?;
            staged.files.push(NewFile {
                name: TOKEN_FILE.to_string(),
                old,
                bytes: Secret::new(text.into_bytes()),
            });
            staged.details.token = Some(TokenChange {
                path: rel.join(TOKEN_FILE).to_string_lossy().into_owned(),
                old_exp: t.token.and_then(|e| e.not_after).map(stamp),
                new_exp: stamp(self.not_after),
            });
        }
        Ok(staged)
    }
}

impl Rotation<'_> {
    /// Stages the new certificate (and key); says what changed, less the paths and old expiry.
    fn stage_cert(
        &self,
        pem: &[u8],
        sha: Digest,
        key: &Slot,
        staged: &mut Staged,
    ) -> Result<CertChange, Problem> {
        let old_der = pemblock::single(pem).map_err(|e| e.in_file(CERT_FILE))?.der;
        let public = issue::public_key_of(&old_der)?;
        let terms = Terms {
            serial: issue::random_serial().map_err(chain)?,
            not_before: self.not_before,
            not_after: self.not_after,
        };
        let issuer = &self.signer.issuer;
        let mut key_change = KeyChange::Reused;
        let der = match key {
            Slot::Present(old_key) if self.keys == KeyMode::Rotate => {
                let format = key_format(old_key)?;
                let pair = keys::generate_key(public.alg)
                    .map_err(|e| Problem::new(format!("{e:#}; set keys = \"reuse\" to keep it")))?;
                let der = issue::reissue(&old_der, &pair, &terms, issuer, self.ca)?;
                let key_pem = keys::encode_key(&pair, public.alg, format).map_err(chain)?;
                staged.files.push(NewFile {
                    name: KEY_FILE.to_string(),
                    old: Digest::of(old_key),
                    bytes: Secret::new(key_pem.into_bytes()),
                });
                key_change = KeyChange::Rotated;
                der
            }
            _ => issue::reissue(
                &old_der,
                &ReusedKey {
                    alg: public.alg,
                    bits: public.bits,
                },
                &terms,
                issuer,
                self.ca,
            )?,
        };
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der)).replace("\r\n", "\n");
        staged.files.push(NewFile {
            name: CERT_FILE.to_string(),
            old: sha,
            bytes: Secret::new(cert_pem.into_bytes()),
        });
        Ok(CertChange {
            path: String::new(),
            old_serial: issue::serial_of(&old_der),
            new_serial: hex::encode_upper(terms.serial),
            old_not_after: None,
            new_not_after: stamp(self.not_after),
            key: key_change,
        })
    }

    fn token_for(&self, sub: &str) -> Result<String, Problem> {
        let claims = Claims::new(&self.ca.common_name, sub, self.not_before, self.not_after)
            .map_err(chain)?;
        let text = self.signer.tokens.sign(&claims).map_err(chain)?;
        Ok(format!("{text}\n"))
    }
}

/// What went wrong making an identity's new credentials: it is left as it was, and failed.
fn failed(problem: Problem) -> NotStaged {
    NotStaged::Failed(problem.to_string())
}

/// An error of the signing or key libraries, as one line with its causes.
fn chain(err: anyhow::Error) -> Problem {
    Problem::new(format!("{err:#}"))
}

/// Opens an identity's directory beneath the fleet root without following a link at any step
/// (docs/design.md §8): a directory swapped for a link, or gone, leaves the identity alone.
pub(super) fn open_identity(fleet: &RootDir, id: &IdentityId) -> Result<IdentityDir, NotStaged> {
    fleet.identity(id).map_err(|e| {
        NotStaged::Skipped(match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => {
                "service directory is not a directory (or is a symbolic link on its way)".into()
            }
            _ => format!("service directory cannot be opened: {e}"),
        })
    })
}

fn unchanged(slot: &Slot, judged: Option<Expected>, file: &str) -> Result<(), NotStaged> {
    let Some(Expected { sha256: judged, .. }) = judged else {
        return Ok(());
    };
    match slot {
        Slot::Present(bytes) if Digest::of(bytes) == judged => Ok(()),
        Slot::Present(_) => Err(NotStaged::Skipped(format!("{file} changed since the plan"))),
        Slot::Absent => Err(NotStaged::Skipped(format!("{file} is gone since the plan"))),
        Slot::Unusable(why) => Err(NotStaged::Skipped(format!("{file} {why}"))),
        Slot::NotReadable => Err(NotStaged::Skipped(format!(
            "{file} {}",
            crate::fsio::NOT_READABLE
        ))),
    }
}

/// The encoding of an existing key file, kept for its replacement.
fn key_format(pem: &[u8]) -> Result<KeyFormat, Problem> {
    match pemblock::single(pem)
        .map_err(|e| e.in_file(KEY_FILE))?
        .label
        .as_str()
    {
        "PRIVATE KEY" => Ok(KeyFormat::Pkcs8),
        _ => Ok(KeyFormat::Traditional),
    }
}
