//! rekey's own state under `<root>/.rekey/`: the writer lock and one directory per run (journal,
//! backup, report). Also the crash replay every writer performs before doing anything else.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::journal::{self, Journal, Record};
use super::report::{Command, Details, FleetFacts, Header, IdentityReport, Notes, Outcome, Report};
use crate::fsio;

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
    fsio::create_private_dir(&dir)?;
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

/// A run in progress: its directory and journal.
pub struct Run {
    pub id: String,
    pub dir: PathBuf,
    pub journal: Journal,
}

impl Run {
    /// Starts a run: a new directory named by the wall clock, so that ids sort in start order.
    pub fn start(
        root: &Path,
        started: DateTime<Utc>,
        command: Command,
        as_of: DateTime<Utc>,
        notes: &Notes,
    ) -> Result<Run> {
        let runs = runs_dir(root);
        fsio::create_private_dir(&runs)?;
        let mut id = started.format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let mut n = 1;
        while runs.join(&id).exists() {
            id = format!("{}-{n}", started.format("%Y%m%dT%H%M%S%.6fZ"));
            n += 1;
        }
        let dir = runs.join(&id);
        fsio::create_private_dir(&dir.join("backup"))?;
        let mut journal = Journal::create(&dir.join("journal.jsonl"))?;
        journal.append(&Record::Start {
            version: journal::VERSION,
            run_id: id.clone(),
            command: command.as_str().to_string(),
            as_of: crate::classify::stamp(as_of),
            operator: notes.operator.clone(),
            reason: notes.reason.clone(),
        })?;
        fsio::sync_dir(&runs)?;
        Ok(Run { id, dir, journal })
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
    fsio::write_atomic(
        &run_dir.join("report.json"),
        report.to_json().as_bytes(),
        0o600,
    )
}

/// Finishes or undoes whatever an interrupted run left, before any new work: its identities end
/// wholly old or new, its report is written and, for `recover`, its audit lines are paired with
/// outcomes. Returns a line per run replayed, for stderr.
pub fn replay_interrupted(root: &Path, now: DateTime<Utc>) -> Result<Vec<String>> {
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
        let report = replayed_report(root, &id, &records, &finished, &undone, now);
        write_report(&dir, &report)?;
        if report.command == Command::Recover {
            super::audit::settle(root, &report, now)?;
        }
        said.push(format!(
            "rekey: run {id} was interrupted: finished {}, left {} as {}",
            crate::count::count(finished.len(), "identity", "identities"),
            undone.len(),
            if undone.len() == 1 {
                "it was"
            } else {
                "they were"
            }
        ));
    }
    Ok(said)
}

/// The report of a run finished by a replay: every identity of a committed batch or finished
/// now is done, every identity undone failed, all from the journal.
fn replayed_report(
    root: &Path,
    id: &str,
    records: &[Record],
    finished: &[journal::Change],
    undone: &[journal::Change],
    now: DateTime<Utc>,
) -> Report {
    let start = records.iter().find_map(|r| match r {
        Record::Start {
            command,
            as_of,
            operator,
            reason,
            ..
        } => Some((command.as_str(), as_of.as_str(), operator, reason)),
        _ => None,
    });
    let command = match start.map(|s| s.0) {
        Some("apply") => Command::Apply,
        Some("recover") => Command::Recover,
        Some("rollback") => Command::Rollback,
        _ => Command::Rotate,
    };
    let started = run_started(id).unwrap_or_default();
    let as_of = start
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.1).ok())
        .map_or(started, |t| t.with_timezone(&Utc));
    let mut done = journal::committed(records);
    done.extend(finished.iter().cloned());
    let mut identities: Vec<IdentityReport> = done
        .into_iter()
        .map(|c| IdentityReport::done(c.node, c.service, c.files, Details::default()))
        .collect();
    identities.extend(undone.iter().map(|c| {
        let why = "interrupted before its files were replaced: left as it was".to_string();
        IdentityReport::unchanged(&c.node, &c.service, Outcome::Failed, why)
    }));
    identities.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
    identities.dedup_by(|a, b| a.node == b.node && a.service == b.service);
    let header = Header {
        run_id: id.to_string(),
        command,
        started,
        finished: now,
        as_of,
        root: root.to_string_lossy().into_owned(),
        notes: Notes {
            rolls_back: None,
            reason: start.and_then(|s| s.3.clone()),
            operator: start.and_then(|s| s.2.clone()),
        },
        recovered_by_replay: true,
        stopped: None,
        warnings: Vec::new(),
        fleet: FleetFacts::default(),
        hooks_skipped: false,
        retried_hooks: Vec::new(),
    };
    Report::new(header, identities)
}

/// The wall-clock start a run id names (`20261128T000000.000000Z`, maybe with `-N`).
fn run_started(id: &str) -> Option<DateTime<Utc>> {
    let stem = id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%S%.fZ")
        .ok()
        .map(|t| t.and_utc())
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
