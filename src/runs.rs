//! rekey's own state under `<root>/.rekey/`: the writer lock, one directory per run (journal,
//! backup, report) and the recovery audit log. Also the crash replay every writer performs
//! before doing anything else.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fsio;
use crate::journal::{self, Journal, Record};

/// The report format version.
pub const REPORT_VERSION: u32 = 1;

pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".rekey")
}

pub fn runs_dir(root: &Path) -> PathBuf {
    state_dir(root).join("runs")
}

/// Held while a command writes; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes `.rekey/lock`, or fails at once if another writer holds it.
pub fn lock(root: &Path) -> Result<Lock> {
    let dir = state_dir(root);
    create_private_dir(&dir)?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("failed to open the lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(TryLockError::WouldBlock) => {
            bail!(
                "another rekey is writing to this fleet (lock {} is held); nothing was changed",
                path.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("failed to take the lock {}", path.display()))
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))
}

/// A run in progress: its directory and journal.
pub struct Run {
    pub id: String,
    pub dir: PathBuf,
    pub journal: Journal,
    pub started: DateTime<Utc>,
}

impl Run {
    /// Starts a run: a new directory named by the wall clock, so that ids sort in start order.
    pub fn start(
        root: &Path,
        started: DateTime<Utc>,
        command: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Run> {
        let runs = runs_dir(root);
        create_private_dir(&runs)?;
        let mut id = started.format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let mut n = 1;
        while runs.join(&id).exists() {
            id = format!("{}-{n}", started.format("%Y%m%dT%H%M%S%.6fZ"));
            n += 1;
        }
        let dir = runs.join(&id);
        create_private_dir(&dir.join("backup"))?;
        let mut journal = Journal::create(&dir.join("journal.jsonl"))?;
        journal.append(&Record::Start {
            version: journal::VERSION,
            run_id: id.clone(),
            command: command.to_string(),
            as_of: crate::classify::stamp(as_of),
        })?;
        fsio::sync_dir(&runs)?;
        Ok(Run {
            id,
            dir,
            journal,
            started,
        })
    }

    pub fn backup(&self) -> PathBuf {
        self.dir.join("backup")
    }

    /// Writes `report.json`, then closes the journal (a run cut short between the two is
    /// replayed and reported again).
    pub fn finish(mut self, report: &Report) -> Result<()> {
        write_report(&self.dir, report)?;
        self.journal.append(&Record::End { recovered: false })
    }
}

pub fn write_report(run_dir: &Path, report: &Report) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report).expect("a report always serializes");
    text.push('\n');
    fsio::write_atomic(&run_dir.join("report.json"), text.as_bytes(), 0o600)
}

/// `report.json`: what a run did, identity by identity. No secrets: names, outcomes, digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub version: u32,
    pub run_id: String,
    pub command: String,
    pub started: String,
    pub as_of: String,
    pub root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub recovered_by_replay: bool,
    /// Why the run stopped before its end (the filesystem filled up), naming the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub counts: Counts,
    pub identities: Vec<IdentityReport>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityReport {
    pub node: String,
    pub service: String,
    /// `done`, `skipped` or `failed`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<journal::FileChange>,
}

/// Finishes or undoes whatever an interrupted run left, before any new work. Returns a line per
/// run replayed, for stderr.
pub fn replay_interrupted(root: &Path) -> Result<Vec<String>> {
    let runs = runs_dir(root);
    let mut said = Vec::new();
    for id in list_ids(&runs)? {
        let dir = runs.join(&id);
        let path = dir.join("journal.jsonl");
        if !path.is_file() {
            continue;
        }
        let records = journal::read(&path)?;
        let ended = records.iter().any(|r| matches!(r, Record::End { .. }));
        if ended && dir.join("report.json").is_file() {
            continue;
        }
        let (finished, undone) = journal::replay(&path, root, &dir.join("backup"))?;
        // Killed while saving its report: the half-written copy goes, a whole one is written.
        fsio::remove_stale_temps(&dir)?;
        let report = replayed_report(root, &id, &records, &finished, &undone);
        write_report(&dir, &report)?;
        said.push(format!(
            "rekey: run {id} was interrupted: finished {} identities, left {} as they were",
            finished.len(),
            undone.len()
        ));
    }
    Ok(said)
}

fn replayed_report(
    root: &Path,
    id: &str,
    records: &[Record],
    finished: &[journal::Change],
    undone: &[journal::Change],
) -> Report {
    let (command, as_of) = records
        .iter()
        .find_map(|r| match r {
            Record::Start { command, as_of, .. } => Some((command.clone(), as_of.clone())),
            _ => None,
        })
        .unwrap_or_default();
    // Batches committed before the crash are in the journal too.
    let mut done: Vec<journal::Change> = Vec::new();
    for r in records {
        if let Record::Prepare { batch, identities } = r
            && records
                .iter()
                .any(|c| matches!(c, Record::Commit { batch: b } if b == batch))
        {
            let ready: Vec<&String> = records
                .iter()
                .filter_map(|c| match c {
                    Record::Ready {
                        batch: b,
                        identities,
                    } if b == batch => Some(identities),
                    _ => None,
                })
                .flatten()
                .collect();
            done.extend(
                identities
                    .iter()
                    .filter(|c| ready.contains(&&c.key()))
                    .cloned(),
            );
        }
    }
    done.extend(finished.iter().cloned());
    let mut identities: Vec<IdentityReport> = done
        .iter()
        .map(|c| IdentityReport {
            node: c.node.clone(),
            service: c.service.clone(),
            outcome: "done".into(),
            reason: String::new(),
            files: c.files.clone(),
        })
        .collect();
    identities.extend(undone.iter().map(|c| IdentityReport {
        node: c.node.clone(),
        service: c.service.clone(),
        outcome: "failed".into(),
        reason: "interrupted before its files were replaced: left as it was".into(),
        files: Vec::new(),
    }));
    identities.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
    identities.dedup_by(|a, b| a.node == b.node && a.service == b.service);
    let counts = Counts {
        done: identities.iter().filter(|i| i.outcome == "done").count(),
        skipped: 0,
        failed: identities.iter().filter(|i| i.outcome == "failed").count(),
    };
    Report {
        version: REPORT_VERSION,
        run_id: id.to_string(),
        command,
        started: id.to_string(),
        as_of,
        root: root.to_string_lossy().into_owned(),
        rolls_back: None,
        reason: None,
        operator: None,
        recovered_by_replay: true,
        stopped: None,
        counts,
        identities,
    }
}

/// Run ids in start order.
pub fn list_ids(runs: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list {}", runs.display())),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

pub fn read_report(run_dir: &Path) -> Result<Report> {
    let path = run_dir.join("report.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a rekey report", path.display()))
}

/// Appends lines to `.rekey/audit.jsonl` and syncs them.
pub fn audit(root: &Path, lines: &[serde_json::Value]) -> Result<()> {
    let path = state_dir(root).join("audit.jsonl");
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("failed to open the audit log {}", path.display()))?;
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("failed to append to the audit log {}", path.display()))
}
