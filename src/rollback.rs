//! `rekey rollback RUN_ID` and `rekey runs`. A rollback is itself a journaled run: it stages each
//! file's backup as the new content, so it can be interrupted, replayed and rolled back in turn.
//! A file that no longer holds what the run wrote is reported and left alone.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::apply::{self, NotStaged, Work};
use crate::classify::stamp;
use crate::cli::{Progress, StatusFormat};
use crate::commands::emit;
use crate::exit::Exit;
use crate::fsio::{self, Slot};
use crate::journal::{self, FileChange, Secret, Staged};
use crate::names;
use crate::rotate::{self, WriteOptions};
use crate::runs::{self, REPORT_VERSION, Report, Run};

/// One identity of the run being rolled back.
pub struct Item {
    node: String,
    service: String,
    files: Vec<FileChange>,
}

struct Restore<'a> {
    root: &'a Path,
    run_id: &'a str,
    backup: PathBuf,
}

impl Work for Restore<'_> {
    type Item = Item;

    fn names(item: &Item) -> (&str, &str) {
        (&item.node, &item.service)
    }

    fn stage(&self, item: &Item) -> Result<Staged, NotStaged> {
        let dir = self.root.join("nodes").join(&item.node).join(&item.service);
        let mut staged = Staged {
            node: item.node.clone(),
            service: item.service.clone(),
            dir,
            files: Vec::new(),
        };
        for f in &item.files {
            let live = staged.dir.join(&f.name);
            let now = match fsio::read_credential(&live) {
                Slot::Present(bytes) => hex::encode(Sha256::digest(bytes)),
                _ => String::new(),
            };
            if now != f.new_sha256 {
                return Err(NotStaged::Skipped(format!(
                    "{} changed since run {}: left alone",
                    f.name, self.run_id
                )));
            }
            let saved = journal::backup_path(&self.backup, &item.node, &item.service, &f.name);
            let bytes = match fsio::read_credential(&saved) {
                Slot::Present(bytes) => bytes,
                _ => {
                    return Err(NotStaged::Failed(format!(
                        "backup {} is missing",
                        saved.display()
                    )));
                }
            };
            if hex::encode(Sha256::digest(&bytes)) != f.old_sha256 {
                return Err(NotStaged::Failed(format!(
                    "backup {} is damaged",
                    saved.display()
                )));
            }
            let mut current = [0u8; 32];
            hex::decode_to_slice(&f.new_sha256, &mut current)
                .map_err(|e| NotStaged::Failed(format!("bad report digest: {e}")))?;
            staged.files.push((f.name.clone(), current, Secret(bytes)));
        }
        Ok(staged)
    }
}

pub fn rollback(root: &Path, run_id: &str, opts: &WriteOptions) -> Result<Exit> {
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))?;
    let runs_dir = runs::runs_dir(&root);
    if run_id.contains('/') || !runs::list_ids(&runs_dir)?.iter().any(|id| id == run_id) {
        bail!(
            "no run {run_id:?} in {} (see rekey runs)",
            runs_dir.display()
        );
    }
    let _lock = rotate::begin_writing(&root)?;
    let target = runs::read_report(&runs_dir.join(run_id))?;
    let mut items = Vec::new();
    for i in target
        .identities
        .into_iter()
        .filter(|i| i.outcome == "done" && !i.files.is_empty())
    {
        if !names::is_valid(&i.node)
            || !names::is_valid(&i.service)
            || i.files.iter().any(|f| !names::is_valid(&f.name))
        {
            bail!(
                "report of run {run_id} names an invalid path ({}/{})",
                i.node,
                i.service
            );
        }
        items.push(Item {
            node: i.node,
            service: i.service,
            files: i.files,
        });
    }
    if items.is_empty() {
        eprintln!("rekey: run {run_id} replaced no file; nothing to roll back");
        return Ok(Exit::Ok);
    }
    let work = Restore {
        root: &root,
        run_id,
        backup: runs_dir.join(run_id).join("backup"),
    };
    let mut run = Run::start(&root, opts.started, "rollback", opts.started)?;
    let progress = apply::show_progress(
        opts.progress,
        std::io::stderr().is_terminal(),
        opts.format == StatusFormat::Table,
    );
    let outcome = rotate::pool(opts.jobs)?
        .install(|| apply::run_batches(&work, &items, &mut run, &root, progress))?;
    let report = Report {
        version: REPORT_VERSION,
        run_id: run.id.clone(),
        command: "rollback".into(),
        started: stamp(opts.started),
        as_of: stamp(opts.started),
        root: root.to_string_lossy().into_owned(),
        rolls_back: Some(run_id.to_string()),
        reason: None,
        operator: None,
        recovered_by_replay: false,
        stopped: outcome.stopped,
        counts: outcome.counts,
        identities: outcome.identities,
    };
    rotate::conclude(run, &report, opts.format)
}

/// Default options for commands that take none of the writing flags.
pub fn quiet_options(started: chrono::DateTime<chrono::Utc>) -> WriteOptions {
    WriteOptions {
        jobs: None,
        progress: Progress::Never,
        format: StatusFormat::Table,
        started,
    }
}

/// `rekey runs`: one line per run, oldest first.
pub fn list(root: &Path) -> Result<Exit> {
    let runs_dir = runs::runs_dir(root);
    let ids = runs::list_ids(&runs_dir)?;
    let reports: Vec<(String, Option<Report>)> = ids
        .into_iter()
        .map(|id| {
            let r = runs::read_report(&runs_dir.join(&id)).ok();
            (id, r)
        })
        .collect();
    let mut rows = vec![
        [
            "RUN", "STARTED", "COMMAND", "AS OF", "DONE", "SKIPPED", "FAILED", "NOTE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (id, report) in &reports {
        let Some(r) = report else {
            rows.push(vec![
                id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "no report (interrupted?)".into(),
            ]);
            continue;
        };
        let mut notes = Vec::new();
        if let Some(target) = &r.rolls_back {
            notes.push(format!("rolls back {target}"));
        }
        for (other, later) in &reports {
            if later.as_ref().and_then(|l| l.rolls_back.as_deref()) == Some(id.as_str()) {
                notes.push(format!("rolled back by {other}"));
            }
        }
        if r.recovered_by_replay {
            notes.push("interrupted, then replayed".into());
        }
        rows.push(vec![
            id.clone(),
            r.started.clone(),
            r.command.clone(),
            r.as_of.clone(),
            r.counts.done.to_string(),
            r.counts.skipped.to_string(),
            r.counts.failed.to_string(),
            notes.join("; "),
        ]);
    }
    let out = crate::report::align(&rows);
    emit(&out)?;
    Ok(Exit::Ok)
}
