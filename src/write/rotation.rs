//! Rotation, the work of `apply`, `rotate` and `recover`: for each identity, check its files
//! against what was judged, issue the new certificate (and key) and token, and hand them to the
//! batch loop. What to rotate is decided before (by the fleet's judgement, narrowed by a plan).

use std::path::Path;

use chrono::{DateTime, Utc};

use super::batches::{NotStaged, Work};
use super::journal::{NewFile, Secret, Staged};
use crate::ca::Ca;
use crate::classify::Action;
use crate::digest::Digest;
use crate::fsio::Slot;
use crate::issue::{self, Terms};
use crate::keys::{self, KeyFormat};
use crate::names::IdentityId;
use crate::pemblock;
use crate::policy::KeyMode;
use crate::scan::{self, CERT_FILE, Candidate, KEY_FILE, TOKEN_FILE};
use crate::signer::{CaSigner, ReusedKey};
use crate::survey::{Assessed, Identity};
use crate::token::Claims;

/// One identity to rotate: for each credential present, the digest it had when judged, and
/// whether to rotate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub cert: Option<Expected>,
    pub token: Option<Expected>,
}

/// A credential as judged: its digest then, and whether it is to be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub sha256: Digest,
    pub rotate: bool,
}

impl Target {
    /// The target of a surveyed identity whose judgement is `action` for at least one
    /// credential (`Rotate` for `rotate`, `Recover` for `recover`).
    pub fn judged(identity: &Identity, action: Action) -> Option<Target> {
        let expected = |c: &Option<Assessed>| {
            c.as_ref().and_then(|c| {
                c.sha256.map(|sha256| Expected {
                    sha256,
                    rotate: c.verdict.state.action() == action,
                })
            })
        };
        let target = Target {
            cert: expected(&identity.cert),
            token: expected(&identity.token),
        };
        target.rotates().then_some(target)
    }

    pub fn rotates(&self) -> bool {
        self.cert.iter().chain(self.token.iter()).any(|e| e.rotate)
    }

    fn rotated(e: Option<Expected>) -> Option<Digest> {
        e.filter(|e| e.rotate).map(|e| e.sha256)
    }
}

/// What every rotation of one run shares.
pub struct Rotation<'a> {
    pub root: &'a Path,
    pub ca: &'a Ca,
    pub signer: &'a CaSigner,
    pub keys: KeyMode,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl Work for Rotation<'_> {
    type Item = Target;

    /// Prepares the new files of one identity.
    fn stage(&self, id: &IdentityId, t: &Target) -> Result<Staged, NotStaged> {
        let dir = self.root.join("nodes").join(id.node()).join(id.service());
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(NotStaged::Skipped(
                    "service directory is not a directory (or is a link)".into(),
                ));
            }
            Err(e) => {
                return Err(NotStaged::Skipped(format!(
                    "service directory cannot be read: {e}"
                )));
            }
        }
        let candidate = Candidate {
            node: id.node().to_string(),
            service: id.service().to_string(),
            dir: dir.clone(),
            is_link: false,
        };
        // The files must still be the ones judged: their digests say so.
        let files = scan::read(&candidate);
        unchanged(&files.cert, t.cert, CERT_FILE)?;
        unchanged(&files.token, t.token, TOKEN_FILE)?;
        let mut staged = Staged {
            node: id.node().to_string(),
            service: id.service().to_string(),
            dir,
            files: Vec::new(),
        };
        if let (Some(sha), Slot::Present(pem)) = (Target::rotated(t.cert), &files.cert) {
            self.stage_cert(pem, sha, &files.key, &mut staged)
                .map_err(NotStaged::Failed)?;
        }
        if let Some(old) = Target::rotated(t.token) {
            let text = self.token_for(&id.to_string()).map_err(NotStaged::Failed)?;
            staged.files.push(NewFile {
                name: TOKEN_FILE.to_string(),
                old,
                bytes: Secret(text.into_bytes()),
            });
        }
        Ok(staged)
    }
}

impl Rotation<'_> {
    fn stage_cert(
        &self,
        pem: &[u8],
        sha: Digest,
        key: &Slot,
        staged: &mut Staged,
    ) -> Result<(), String> {
        let old_der = pemblock::single(pem)
            .map_err(|e| format!("{CERT_FILE} {e}"))?
            .der;
        let public = issue::public_key_of(&old_der)?;
        let terms = Terms {
            serial: issue::random_serial().map_err(|e| format!("{e:#}"))?,
            not_before: self.not_before,
            not_after: self.not_after,
        };
        let issuer = &self.signer.issuer;
        let der = match key {
            Slot::Present(old_key) if self.keys == KeyMode::Rotate => {
                let format = key_format(old_key)?;
                let pair = keys::generate_key(public.alg)
                    .map_err(|e| format!("{e:#}; set keys = \"reuse\" to keep it"))?;
                let der = issue::reissue(&old_der, &pair, &terms, issuer, self.ca)?;
                let key_pem =
                    keys::encode_key(&pair, public.alg, format).map_err(|e| format!("{e:#}"))?;
                staged.files.push(NewFile {
                    name: KEY_FILE.to_string(),
                    old: Digest::of(old_key),
                    bytes: Secret(key_pem.into_bytes()),
                });
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
            bytes: Secret(cert_pem.into_bytes()),
        });
        Ok(())
    }

    fn token_for(&self, sub: &str) -> Result<String, String> {
        let claims = Claims::new(&self.ca.common_name, sub, self.not_before, self.not_after)
            .map_err(|e| format!("{e:#}"))?;
        let text = self
            .signer
            .tokens
            .sign(&claims)
            .map_err(|e| format!("{e:#}"))?;
        Ok(format!("{text}\n"))
    }
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
    }
}

/// The encoding of an existing key file, kept for its replacement.
fn key_format(pem: &[u8]) -> Result<KeyFormat, String> {
    match pemblock::single(pem)
        .map_err(|e| format!("{KEY_FILE} {e}"))?
        .label
        .as_str()
    {
        "PRIVATE KEY" => Ok(KeyFormat::Pkcs8),
        _ => Ok(KeyFormat::Traditional),
    }
}

/// Rotates `targets` in one journaled run: loads the CA key (before anything is written or
/// audited), starts the run, lets `before` record what it must before the first batch (the
/// recovery audit), then runs the batches. `refused` are planned identities left alone, with why.
pub fn run(
    write: super::WriteRun,
    survey: &crate::survey::Survey,
    command: super::Command,
    targets: std::collections::BTreeMap<IdentityId, Target>,
    refused: Vec<(IdentityId, String)>,
    notes: super::Notes,
    before: impl FnOnce(&super::Started) -> anyhow::Result<()>,
) -> anyhow::Result<crate::exit::Exit> {
    if targets.is_empty() && refused.is_empty() {
        eprintln!("rekey: nothing to rotate");
        return Ok(crate::exit::Exit::Ok);
    }
    let as_of = write.as_of();
    let signer = crate::signer::load(write.root(), &survey.ca, as_of)?;
    let not_after = (as_of + survey.policy.validity()).min(survey.ca.not_after);
    let warnings: Vec<String> = super::expired_on_arrival(not_after, write.settings.started)
        .into_iter()
        .collect();
    let root = write.root().to_path_buf();
    let rotation = Rotation {
        root: &root,
        ca: &survey.ca,
        signer: &signer,
        keys: survey.policy.keys,
        not_before: as_of,
        not_after,
    };
    let started = write.start(command, notes)?;
    before(&started)?;
    let (_, exit) = started.execute(&rotation, &targets, refused, warnings)?;
    Ok(exit)
}

/// What `rotate` does: rotates every identity `survey` judges `rotate`. The exit code also
/// says (4) when identities are left for a person: those that need recover or have problems.
pub fn rotate_due(
    write: super::WriteRun,
    survey: &crate::survey::Survey,
) -> anyhow::Result<crate::exit::Exit> {
    use crate::exit::Exit;
    use crate::survey::Attention;
    let targets = survey
        .identities
        .iter()
        .filter_map(|i| {
            let target = Target::judged(i, Action::Rotate)?;
            Some((IdentityId::new(&i.node, &i.service)?, target))
        })
        .collect();
    let exit = run(
        write,
        survey,
        super::Command::Rotate,
        targets,
        Vec::new(),
        super::Notes::default(),
        |_| Ok(()),
    )?;
    let left = match survey.attention(None) {
        Attention::RecoverOrProblem => Exit::Attention,
        Attention::WorkDue | Attention::None => Exit::Ok,
    };
    Ok(exit.worse(left))
}
