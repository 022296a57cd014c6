//! `rekey ca begin|switch|finish|abort`: the stages of a CA rotation, each a writing run. The
//! stage's change of `ca/` is one journaled exchange of the directory; each identity's trust
//! file `ca.pem` then follows the bundle through the journaled batches. `--dry-run` is the same
//! run with the sink that writes nothing.
//!
//! | stage | `ca/` after it | `ca.pem` |
//! | --- | --- | --- |
//! | begin | `next/` the new CA; `bundle.pem` old + new | = the bundle |
//! | switch | the new CA signs; the old in `previous/`; the bundle as it was | unchanged |
//! | finish | `previous/` gone: its certificate in `retired/`, its key removed (and every copy under `.rekey/runs/`); `bundle.pem` the CA alone | = the bundle |
//! | abort (after begin) | `next/` gone; `bundle.pem` the CA alone | = the bundle |

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::ca::{self, CaDir, Needed, Role, Stage};
use crate::digest::Digest;
use crate::exit::Exit;
use crate::fsio::{self, Slot};
use crate::keys::KeyAlg;
use crate::names::IdentityId;
use crate::signer::{self as successor, CaPair, Terms};
use crate::write::{
    self, CaChange, CaTree, FleetFacts, Notes, RunCommand, Settings, TrustFiles, WriteRun,
};

/// The key type of a new CA (`--key-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    fn alg(self) -> KeyAlg {
        match self {
            KeyType::P256 => KeyAlg::P256,
            KeyType::P384 => KeyAlg::P384,
            KeyType::Ed25519 => KeyAlg::Ed25519,
            KeyType::Rsa2048 => KeyAlg::Rsa { bits: 2048 },
            KeyType::Rsa3072 => KeyAlg::Rsa { bits: 3072 },
            KeyType::Rsa4096 => KeyAlg::Rsa { bits: 4096 },
        }
    }
}

/// What `ca begin` makes the new CA of.
#[derive(Debug, Default)]
pub struct Begin {
    pub key_type: Option<KeyType>,
    pub validity_days: Option<u32>,
    pub subject: Option<String>,
    /// `--import-cert F --import-key F`: a CA made elsewhere.
    pub import: Option<(PathBuf, PathBuf)>,
}

impl Begin {
    /// Whether nothing was asked of the new CA (`ca begin` alone).
    fn is_default(&self) -> bool {
        self.key_type.is_none()
            && self.validity_days.is_none()
            && self.subject.is_none()
            && self.import.is_none()
    }
}

/// Which stage.
#[derive(Debug)]
pub enum StageCommand {
    Begin(Begin),
    Switch,
    Finish,
    Abort,
}

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub stage: StageCommand,
    /// The run date: the clock at start, to the second.
    pub as_of: DateTime<Utc>,
    pub write: Settings,
}

pub(crate) fn stage(o: &Options) -> Result<Exit> {
    let mut run = WriteRun::begin(&o.root, o.as_of, &o.write)?;
    let root = run.root().to_path_buf();
    let dir = CaDir::of(&root);
    let now = dir.stage().map_err(|e| anyhow!("{e}"))?;
    let (command, change) = match (&o.stage, now) {
        (StageCommand::Begin(b), Stage::Steady) => (RunCommand::CaBegin, Some(begin(&run, b)?)),
        // Run again after a begin cut short: the trust files it did not reach. What the new CA
        // is made of was settled by the begin that made it: asked for another, it refuses.
        (StageCommand::Begin(b), Stage::Begun) if b.is_default() => (RunCommand::CaBegin, None),
        (StageCommand::Begin(_), Stage::Begun) => bail!(
            "a CA rotation is already begun (ca/next holds the new CA): rekey ca begin run again \
             only brings the ca.pem files to the bundle, and takes no --key-type, \
             --validity-days, --subject or --import-*; to begin with another CA, rekey ca abort \
             first"
        ),
        (StageCommand::Switch, Stage::Begun) => (RunCommand::CaSwitch, Some(switch(&run)?)),
        (StageCommand::Finish, Stage::Switched) => (RunCommand::CaFinish, Some(finish(&run)?)),
        // Run again after a finish cut short: the trust files it did not reach.
        (StageCommand::Finish, Stage::Steady) if stale_trust(&run)? => (RunCommand::CaFinish, None),
        (StageCommand::Abort, Stage::Begun) => (RunCommand::CaAbort, Some(abort(&run)?)),
        (stage, now) => bail!("{}", refusal(stage, now)),
    };
    let bundle = match &change {
        Some(c) => c.bundle.clone(),
        None => read_file(&dir.bundle())?,
    };
    let trust = TrustFiles::new(open_fleet(&root)?, bundle);
    // Each identity's ca.pem as the survey streams the fleet: the run holds the batch in
    // flight and the next, whatever the fleet's size; its progress counts every identity.
    let meter = run.meter(crate::survey::listed(&root, None));
    let (as_of, policy) = (run.as_of(), Some(run.policy().clone()));
    let aside = run.aside();
    crate::survey::read_under(&root, as_of, policy, None, aside.as_deref(), |_, judged| {
        if change
            .as_ref()
            .is_some_and(|c| c.change.to != Stage::Switched)
        {
            // begin, finish and abort change the bundle; switch leaves it as it is.
            run.call_ca_reload();
        }
        let mut started = run.start(command, Notes::default())?;
        if let Some(c) = &change {
            started.change_ca(&c.change)?;
            let verb = if o.write.sink == write::Sink::Nowhere {
                "would be"
            } else {
                "is now"
            };
            eprintln!(
                "rekey: {}: the CA rotation {verb} {}",
                command.as_str(),
                c.change.to.name()
            );
        }
        let each = judged.by_ref().filter_map(|identity| {
            let target = trust.target(&identity.id);
            if target.is_none() {
                meter.tick();
            }
            Some((identity.id, target?))
        });
        let streamed = started.stream_metered(&trust, each, &meter, Vec::new());
        meter.finish(streamed.as_ref().is_ok_and(write::Streamed::stopped));
        Ok(streamed?.finish(FleetFacts::default())?.1)
    })?
}

/// The fleet root, open: what each identity's `ca.pem` is read and written beneath.
fn open_fleet(root: &Path) -> Result<fsio::RootDir> {
    fsio::RootDir::open(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))
}

/// The identities a refusal names: how many, and the first few by name.
#[derive(Default)]
struct Named {
    count: usize,
    first: Vec<String>,
}

impl Named {
    const SHOWN: usize = 20;

    fn add(&mut self, id: &IdentityId) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(id.relative().display().to_string());
        }
    }

    /// `a, b, c` (and `, …` when there are more than are named).
    fn list(&self) -> String {
        let more = if self.count > self.first.len() {
            ", …"
        } else {
            ""
        };
        format!("{}{more}", self.first.join(", "))
    }
}

/// A stage's change of `ca/`, and the bundle it leaves.
struct Planned {
    change: CaChange,
    bundle: Vec<u8>,
}

fn refusal(stage: &StageCommand, now: Stage) -> String {
    match (stage, now) {
        (StageCommand::Begin(_), _) => format!(
            "a CA rotation is already {}: finish it first (rekey ca finish)",
            now.name()
        ),
        (StageCommand::Switch, Stage::Steady) | (StageCommand::Finish, Stage::Steady) => {
            "no CA rotation is under way: start one with rekey ca begin".to_string()
        }
        (StageCommand::Switch, _) => "the CA rotation is already switched: rotate what the \
             previous CA signed (rekey rotate), then rekey ca finish"
            .to_string(),
        (StageCommand::Finish, _) => "the CA rotation is begun, not switched: rekey ca switch \
             first, then rekey rotate, then rekey ca finish"
            .to_string(),
        (StageCommand::Abort, Stage::Switched) => "the CA rotation is switched: the new CA \
             already signs, so it cannot be aborted; finish it (rekey rotate, then rekey ca \
             finish), or roll back the switch first (rekey rollback RUN_ID of the ca switch run, \
             see rekey runs) and then abort"
            .to_string(),
        (StageCommand::Abort, _) => "no CA rotation is under way: nothing to abort".to_string(),
    }
}

/// `begin`: the new CA (made, or imported and checked) into `next/`, the bundle old + new.
fn begin(run: &WriteRun, b: &Begin) -> Result<Planned> {
    let root = run.root();
    let dir = CaDir::of(root);
    let old_pem = read_file(&dir.active().cert)?;
    let policy = &run.policy().policy;
    let as_of = run.as_of();
    let window = policy.ca_rotate_before() + policy.validity();
    let needed = Needed {
        now: as_of,
        until: as_of + window,
        days: window.num_days(),
    };
    let pair = match &b.import {
        Some((cert, key)) => CaPair::from_parts(
            String::from_utf8(read_file(cert)?)
                .map_err(|_| anyhow!("{} is not PEM text", cert.display()))?,
            Zeroizing::new(
                String::from_utf8(read_file(key)?)
                    .map_err(|_| anyhow!("{} is not PEM text", key.display()))?,
            ),
        ),
        None => {
            let block = crate::pemblock::single(&old_pem)
                .map_err(|e| anyhow!("{}: {e}", dir.active().cert.display()))?;
            let (_, old) = X509Certificate::from_der(&block.der)
                .map_err(|e| anyhow!("{}: {e}", dir.active().cert.display()))?;
            let active = ca::from_pem(&old_pem, None)?;
            let days = b.validity_days.map_or(policy.ca_validity(), |d| {
                chrono::TimeDelta::days(i64::from(d))
            });
            let terms = Terms {
                alg: b.key_type.map_or(active.public.alg, KeyType::alg),
                common_name: b
                    .subject
                    .clone()
                    .unwrap_or_else(|| successor::successor_name(&active.common_name, as_of)),
                not_before: as_of,
                not_after: as_of + days,
            };
            successor::successor(old.subject(), &terms).map_err(|e| anyhow!("{e}"))?
        }
    };
    // What is made is checked as an imported CA is, before anything is written.
    let named = match &b.import {
        Some((cert, _)) => format!("the CA to import ({})", cert.display()),
        None => "the new CA".to_string(),
    };
    if let Err(problems) = ca::check_import(pair.cert_pem.as_bytes(), pair.key_pem(), needed) {
        let each: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        bail!(
            "{named} cannot be used; nothing was written:\n{}",
            each.join("\n")
        );
    }
    let bundle = ca::bundle_text([text(&old_pem)?, pair.cert_pem.as_str()]).into_bytes();
    let mut tree = CaTree::of(dir.path())?;
    tree.put("next/ca.crt", pair.cert_pem.clone().into_bytes(), 0o644);
    tree.put("next/ca.key", pair.key_pem().to_vec(), 0o600);
    tree.put("bundle.pem", bundle.clone(), 0o644);
    Ok(Planned {
        change: CaChange {
            from: Stage::Steady,
            to: Stage::Begun,
            tree,
            purge: None,
        },
        bundle,
    })
}

/// `switch`: the new CA signs, the old one moves to `previous/`; the bundle stays as it is.
fn switch(run: &WriteRun) -> Result<Planned> {
    let root = run.root();
    let dir = CaDir::of(root);
    refuse_before_settled(run)?;
    let stale = stale_trust_files(run)?;
    if stale.count > 0 {
        bail!(
            "switch refused: the ca.pem of {} does not hold ca/bundle.pem ({}): its service \
             would not trust what the new CA signs. Run rekey ca begin again to bring them (a \
             ca.pem that is a link is never followed: make it a regular file first), then \
             switch",
            crate::count::count(stale.count, "identity", "identities"),
            stale.list()
        );
    }
    // The new CA's key must be the one its certificate names before it signs anything.
    let next = dir.next();
    ca::from_pem(&read_file(&next.cert)?, Some(&read_file(&next.key)?))
        .with_context(|| format!("{} cannot sign", next.cert.display()))?;
    let bundle = read_file(&dir.bundle())?;
    let mut tree = CaTree::of(dir.path())?;
    tree.rename("ca.crt", "previous/ca.crt")?;
    tree.rename("ca.key", "previous/ca.key")?;
    tree.rename("next/ca.crt", "ca.crt")?;
    tree.rename("next/ca.key", "ca.key")?;
    Ok(Planned {
        change: CaChange {
            from: Stage::Begun,
            to: Stage::Switched,
            tree,
            purge: None,
        },
        bundle,
    })
}

/// Refuses a switch while a hook of the begin is pending or failed (relying parties must have
/// loaded the new bundle first), or before `ca_trust_settle_hours` after the begin.
fn refuse_before_settled(run: &WriteRun) -> Result<()> {
    let store = crate::store::Store::of(run.root());
    let history = write::History::read(&store)?;
    let begins: Vec<(&crate::store::RunDir, &write::Report)> = history
        .runs
        .iter()
        .filter_map(|(dir, report)| report.as_ref().map(|r| (dir, r)))
        .filter(|(_, r)| r.command == RunCommand::CaBegin)
        .collect();
    let pending = write::pending_hooks(run.root())?;
    let of_begin: Vec<String> = pending
        .iter()
        .filter(|p| begins.iter().any(|(dir, _)| dir.id() == p.run_id))
        .map(|p| format!("{}:{} ({})", p.run_id, p.call.call, p.why()))
        .collect();
    if !of_begin.is_empty() {
        bail!(
            "switch refused: {} of rekey ca begin {} not run successfully ({}): the services \
             may not trust the new CA yet; fix them and run rekey hooks retry, then switch",
            crate::count::count(of_begin.len(), "hook", "hooks"),
            if of_begin.len() == 1 { "has" } else { "have" },
            of_begin.join(", ")
        );
    }
    let settle = run.policy().policy.ca_trust_settle();
    if let Some((_, last)) = begins.last() {
        let from = last.as_of + settle;
        if run.as_of() < from {
            bail!(
                "switch refused: ca_trust_settle_hours is {} and rekey ca begin ran at {}: \
                 switch at {} or later",
                settle.num_hours(),
                crate::classify::stamp(last.as_of),
                crate::classify::stamp(from)
            );
        }
    }
    Ok(())
}

/// `finish`: refused while anything under `nodes/` is signed by the previous CA; else its
/// certificate is retired, its key removed, the bundle the CA alone.
fn finish(run: &WriteRun) -> Result<Planned> {
    let on_previous = surveyed(run, |identity, named| {
        if identity
            .credentials()
            .any(|c| c.signed_by == Some(Role::Previous))
        {
            named.add(&identity.id);
        }
    })?;
    if on_previous.count > 0 {
        bail!(
            "finish refused: {} still signed by the previous CA: {}; rotate them first \
             (rekey rotate), then finish",
            crate::count::count(on_previous.count, "identity is", "identities are"),
            on_previous.list()
        );
    }
    let root = run.root();
    let dir = CaDir::of(root);
    let previous = dir.previous();
    let old_cert = read_file(&previous.cert)?;
    let retired = ca::from_pem(&old_cert, None)
        .with_context(|| format!("CA {} is unusable", previous.cert.display()))?;
    let key = Zeroizing::new(read_file(&previous.key)?);
    let bundle = ca::bundle_text([text(&read_file(&dir.active().cert)?)?]).into_bytes();
    let retired_at = dir.retired(run.as_of(), &retired.key_id());
    let retired_rel = retired_at
        .strip_prefix(dir.path())
        .map_err(|_| anyhow!("{} is outside ca/", retired_at.display()))?
        .to_string_lossy()
        .into_owned();
    let mut tree = CaTree::of(dir.path())?;
    tree.rename("previous/ca.crt", &retired_rel)?;
    tree.remove("previous/ca.key");
    tree.put("bundle.pem", bundle.clone(), 0o644);
    Ok(Planned {
        change: CaChange {
            from: Stage::Switched,
            to: Stage::Steady,
            tree,
            purge: Some(Digest::of(&key)),
        },
        bundle,
    })
}

/// `abort` (before `switch`): `next/` removed, the bundle the CA alone.
fn abort(run: &WriteRun) -> Result<Planned> {
    let dir = CaDir::of(run.root());
    let bundle = ca::bundle_text([text(&read_file(&dir.active().cert)?)?]).into_bytes();
    let mut tree = CaTree::of(dir.path())?;
    tree.remove("next/ca.crt");
    tree.remove("next/ca.key");
    tree.put("bundle.pem", bundle.clone(), 0o644);
    Ok(Planned {
        change: CaChange {
            from: Stage::Begun,
            to: Stage::Steady,
            tree,
            purge: None,
        },
        bundle,
    })
}

/// The identities whose `ca.pem` does not hold `ca/bundle.pem` (one that is not a regular
/// file included).
fn stale_trust_files(run: &WriteRun) -> Result<Named> {
    let root = run.root();
    let bundle = match fsio::read_credential(&CaDir::of(root).bundle()) {
        Slot::Present(bytes) => bytes,
        _ => return Ok(Named::default()),
    };
    let trust = TrustFiles::new(open_fleet(root)?, bundle);
    surveyed(run, |identity, named| {
        if trust.target(&identity.id).is_some() {
            named.add(&identity.id);
        }
    })
}

/// The identities of the fleet, as the survey streams it under the run's policy, that `pick`
/// names.
fn surveyed(
    run: &WriteRun,
    mut pick: impl FnMut(&crate::survey::Identity, &mut Named),
) -> Result<Named> {
    let policy = Some(run.policy().clone());
    let aside = run.aside();
    crate::survey::read_under(
        run.root(),
        run.as_of(),
        policy,
        None,
        aside.as_deref(),
        |_, judged| {
            let mut named = Named::default();
            for identity in judged.by_ref() {
                pick(&identity, &mut named);
            }
            named
        },
    )
}

fn stale_trust(run: &WriteRun) -> Result<bool> {
    Ok(stale_trust_files(run)?.count > 0)
}

/// A file rekey's configuration names, read whole (bounded, never through a link).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    match fsio::read_credential(path) {
        Slot::Present(bytes) => Ok(bytes),
        Slot::Absent => bail!("{} is missing", path.display()),
        Slot::Unusable(why) => bail!("{} {why}", path.display()),
        Slot::NotReadable => bail!("{} {}", path.display(), fsio::NOT_READABLE),
    }
}

fn text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| anyhow!("a CA certificate is not PEM text"))
}
