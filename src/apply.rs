//! Applying rotations: for each identity, check its files against what was planned, issue the new
//! certificate (and key) and token, and hand them to the journaled write protocol in batches.
//!
//! Also the batch loop shared by every writing command (`run_batches`): prepare in parallel,
//! commit through the journal, collect one report line per identity.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::ca::Ca;
use crate::fsio::Slot;
use crate::inspect;
use crate::issue::{self, Terms};
use crate::journal::{self, Committed, Secret, Staged};
use crate::keys::{self, KeyFormat};
use crate::pemblock;
use crate::policy::KeyMode;
use crate::runs::{Counts, IdentityReport, Run};
use crate::scan::{self, CERT_FILE, Candidate, KEY_FILE, TOKEN_FILE};
use crate::signer::{CaSigner, ReusedKey};
use crate::token::Claims;

/// Identities per journal batch: one sync pair and four journal records per batch.
pub const BATCH: usize = 1024;

/// One identity to rotate, with the digests its files had when the rotation was planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub service: String,
    pub cert: Option<Planned>,
    pub token: Option<Planned>,
}

/// A credential as planned: its digest then, and whether it is to be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub sha256: [u8; 32],
    pub rotate: bool,
}

impl Planned {
    fn rotated(p: Option<Planned>) -> Option<[u8; 32]> {
        p.filter(|p| p.rotate).map(|p| p.sha256)
    }
}

/// Why an identity was not staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStaged {
    /// Left alone on purpose (changed since the plan, a problem now): reported, not an error.
    Skipped(String),
    /// Something went wrong preparing it.
    Failed(String),
}

/// What every rotation of one run shares.
pub struct Rotation<'a> {
    pub root: &'a Path,
    pub ca: &'a Ca,
    pub signer: &'a CaSigner,
    pub keys: KeyMode,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Inspect each identity again before staging it. A plan made in this process judged exactly
    /// the bytes its digests name, so `rotate` and `recover` skip this; `apply` trusts no file.
    pub verify_again: bool,
}

impl Rotation<'_> {
    /// Prepares the new files of one identity.
    pub fn stage(&self, t: &Target) -> Result<Staged, NotStaged> {
        let dir = self.root.join("nodes").join(&t.node).join(&t.service);
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
            node: t.node.clone(),
            service: t.service.clone(),
            dir: dir.clone(),
            is_link: false,
        };
        let files = scan::read(&candidate);
        unchanged(&files.cert, t.cert, CERT_FILE)?;
        unchanged(&files.token, t.token, TOKEN_FILE)?;
        if self.verify_again {
            let inspected = inspect::inspect(&candidate, &files, self.ca);
            for c in inspected.cert.iter().chain(inspected.token.iter()) {
                if let Err(problem) = &c.facts {
                    return Err(NotStaged::Skipped(problem.clone()));
                }
            }
        }
        let mut staged = Staged {
            node: t.node.clone(),
            service: t.service.clone(),
            dir,
            files: Vec::new(),
        };
        if let (Some(sha), Slot::Present(pem)) = (Planned::rotated(t.cert), &files.cert) {
            self.stage_cert(pem, sha, &files.key, &mut staged)
                .map_err(NotStaged::Failed)?;
        }
        if let Some(sha) = Planned::rotated(t.token) {
            let text = self
                .token_for(&format!("{}/{}", t.node, t.service))
                .map_err(NotStaged::Failed)?;
            staged
                .files
                .push((TOKEN_FILE.to_string(), sha, Secret(text.into_bytes())));
        }
        Ok(staged)
    }

    fn stage_cert(
        &self,
        pem: &[u8],
        sha: [u8; 32],
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
                staged.files.push((
                    KEY_FILE.to_string(),
                    Sha256::digest(old_key).into(),
                    Secret(key_pem.into_bytes()),
                ));
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
        staged
            .files
            .push((CERT_FILE.to_string(), sha, Secret(cert_pem.into_bytes())));
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

fn unchanged(slot: &Slot, planned: Option<Planned>, file: &str) -> Result<(), NotStaged> {
    let Some(Planned {
        sha256: planned, ..
    }) = planned
    else {
        return Ok(());
    };
    match slot {
        Slot::Present(bytes) if <[u8; 32]>::from(Sha256::digest(bytes)) == planned => Ok(()),
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

/// Whether to draw a progress bar on stderr: always or never when asked, otherwise only for a
/// person (stderr is a terminal and the output is the table, not JSON).
pub fn show_progress(
    mode: crate::cli::Progress,
    stderr_is_terminal: bool,
    table_output: bool,
) -> bool {
    match mode {
        crate::cli::Progress::Always => true,
        crate::cli::Progress::Never => false,
        crate::cli::Progress::Auto => stderr_is_terminal && table_output,
    }
}

/// Something a writing command does to identities, batch by batch.
pub trait Work: Sync {
    type Item: Sync;
    fn names(item: &Self::Item) -> (&str, &str);
    fn stage(&self, item: &Self::Item) -> Result<Staged, NotStaged>;
}

impl Work for Rotation<'_> {
    type Item = Target;
    fn names(t: &Target) -> (&str, &str) {
        (&t.node, &t.service)
    }
    fn stage(&self, t: &Target) -> Result<Staged, NotStaged> {
        Rotation::stage(self, t)
    }
}

/// Why an identity in the batch the filesystem filled up in failed (the whole story is in the
/// run's `stopped`).
const FULL_UNDONE: &str = "the filesystem filled up during its batch; left unchanged";
/// Why an identity after that batch failed.
const FULL_NOT_TRIED: &str = "not attempted: the filesystem filled up before it";

/// What a writing command did, identity by identity.
#[derive(Debug)]
pub struct Outcome {
    /// One line per item, sorted by (node, service).
    pub identities: Vec<IdentityReport>,
    pub counts: Counts,
    /// Why the run stopped before the end (the filesystem filled up); the identities it did not
    /// reach are `failed` and unchanged.
    pub stopped: Option<String>,
}

/// Runs `work` over `items` through the journal, batch by batch. A full filesystem stops the
/// run cleanly (see [`Outcome::stopped`]); any other error means the run could not go on at
/// all (journal or filesystem sync failed), and the next writer replays the journal.
pub fn run_batches<W: Work>(
    work: &W,
    items: &[W::Item],
    run: &mut Run,
    root: &Path,
    progress: bool,
) -> anyhow::Result<Outcome> {
    let bar = if progress {
        ProgressBar::new(items.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} identities {elapsed_precise} eta {eta}")
            .expect("the progress template is valid"),
    );
    let backup: PathBuf = run.backup();
    let mut reports = Vec::with_capacity(items.len());
    // Staging (crypto) of batch n+1 runs while batch n is committed (mostly waiting on the
    // disk), so neither waits for the other.
    let chunks: Vec<&[W::Item]> = items.chunks(BATCH).collect();
    let mut prepared = chunks
        .first()
        .map(|c| stage_chunk(work, c))
        .unwrap_or_default();
    let mut stopped = None;
    for (batch, chunk) in chunks.iter().enumerate() {
        if stopped.is_some() {
            for item in *chunk {
                let (node, service) = W::names(item);
                reports.push(line(node, service, "failed", FULL_NOT_TRIED.into()));
            }
            continue;
        }
        let mut staged = Vec::new();
        for ((node, service), result) in std::mem::take(&mut prepared) {
            match result {
                Ok(s) => staged.push(s),
                Err(NotStaged::Skipped(reason)) => {
                    reports.push(line(node, service, "skipped", reason))
                }
                Err(NotStaged::Failed(reason)) => {
                    reports.push(line(node, service, "failed", reason))
                }
            }
        }
        let names: Vec<(String, String)> = staged
            .iter()
            .map(|s| (s.node.clone(), s.service.clone()))
            .collect();
        let journal = &mut run.journal;
        let (committed, next) = rayon::join(
            || journal::commit_batch(journal, batch as u32, root, &backup, staged),
            || {
                chunks
                    .get(batch + 1)
                    .map(|c| stage_chunk(work, c))
                    .unwrap_or_default()
            },
        );
        prepared = next;
        let committed = match committed {
            Ok(committed) => committed,
            Err(err) => match err.downcast::<journal::NoSpace>() {
                Ok(journal::NoSpace(why)) => {
                    for (node, service) in &names {
                        reports.push(line(node, service, "failed", FULL_UNDONE.into()));
                    }
                    stopped = Some(why);
                    prepared = Vec::new();
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        for committed in committed {
            reports.push(match committed {
                Committed::Done(change) => IdentityReport {
                    node: change.node,
                    service: change.service,
                    outcome: "done".into(),
                    reason: String::new(),
                    files: change.files,
                },
                Committed::Failed {
                    node,
                    service,
                    reason,
                } => line(&node, &service, "failed", reason),
            });
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    reports.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
    let count = |o: &str| reports.iter().filter(|r| r.outcome == o).count();
    let counts = Counts {
        done: count("done"),
        skipped: count("skipped"),
        failed: count("failed"),
    };
    Ok(Outcome {
        identities: reports,
        counts,
        stopped,
    })
}

type StagedChunk<'a> = Vec<((&'a str, &'a str), Result<Staged, NotStaged>)>;

fn stage_chunk<'a, W: Work>(work: &W, chunk: &'a [W::Item]) -> StagedChunk<'a> {
    chunk
        .par_iter()
        .map(|item| (W::names(item), work.stage(item)))
        .collect()
}

fn line(node: &str, service: &str, outcome: &str, reason: String) -> IdentityReport {
    IdentityReport {
        node: node.into(),
        service: service.into(),
        outcome: outcome.into(),
        reason,
        files: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::show_progress;
    use crate::cli::Progress;

    #[test]
    fn the_progress_bar_shows_only_for_people() {
        let cases = [
            ("auto, terminal, table", Progress::Auto, true, true, true),
            ("auto, terminal, json", Progress::Auto, true, false, false),
            ("auto, piped, table", Progress::Auto, false, true, false),
            ("always, piped, json", Progress::Always, false, false, true),
            ("never, terminal, table", Progress::Never, true, true, false),
        ];
        for (name, mode, tty, table, want) in cases {
            assert_eq!(show_progress(mode, tty, table), want, "{name}");
        }
    }
}
