//! `rekey hooks`: the hooks earlier runs left pending (failed, timed out, or cut short by a
//! crash). `retry` runs them now (re-resolved from the configuration as it is now), instead of
//! at the start of the next writing run; `list` shows them and runs nothing; `discard` drops
//! them by hand, journaled and audited, and runs nothing.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::emit;
use crate::exit::Exit;
use crate::write::hooks::HookStatus;
use crate::write::{self, DiscardTarget, PendingHook, Settings};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    /// The run date: the clock at start, to the second.
    pub as_of: DateTime<Utc>,
    /// Its `hooks` hold the `--deploy-hook` / `--post-hook` given again.
    pub write: Settings,
}

#[derive(Debug)]
pub struct ListOptions {
    pub root: PathBuf,
    /// One JSON array instead of the table.
    pub json: bool,
}

#[derive(Debug)]
pub struct DiscardOptions {
    pub root: PathBuf,
    pub target: DiscardTarget,
    /// The wall clock at start, for the audit log.
    pub started: DateTime<Utc>,
}

pub(crate) fn retry(o: &Options) -> Result<Exit> {
    let (retried, left) = write::retry_hooks(&o.root, o.as_of, &o.write)?;
    let failed = retried
        .iter()
        .filter(|r| r.result.status != HookStatus::Ok)
        .count();
    let failed_text = match (retried.len(), failed) {
        (0, _) => String::new(),
        (_, 0) => ", none failed".to_string(),
        (_, 1) => ", 1 failed and stays pending".to_string(),
        (_, n) => format!(", {n} failed and stay pending"),
    };
    let left_text = match left {
        0 => String::new(),
        n => format!(
            "; {} not given again (still pending)",
            crate::count::count(n, "hook", "hooks")
        ),
    };
    let ran = match retried.len() {
        0 => "no pending hook ran".to_string(),
        n => format!(
            "{} ran",
            crate::count::count(n, "pending hook", "pending hooks")
        ),
    };
    eprintln!("rekey: {ran}{failed_text}{left_text}");
    Ok(if failed + left > 0 {
        Exit::WorkDue
    } else {
        Exit::Ok
    })
}

pub(crate) fn list(o: &ListOptions) -> Result<Exit> {
    let root = crate::survey::open_root(&o.root)?;
    let pending = write::pending_hooks(&root)?;
    if o.json {
        let items: Vec<serde_json::Value> = pending.iter().map(to_json).collect();
        let mut text = serde_json::to_string_pretty(&items).expect("a list always serializes");
        text.push('\n');
        emit(&text)?;
        return Ok(Exit::Ok);
    }
    if pending.is_empty() {
        eprintln!("rekey: no hook is pending");
        return Ok(Exit::Ok);
    }
    let mut rows = vec![
        ["RUN", "CALL", "KIND", "SOURCE", "IDENTITY", "WHY"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(pending.iter().map(|p| {
        vec![
            p.run_id.clone(),
            p.call.call.to_string(),
            p.call.kind.as_str().to_string(),
            p.call.source.label(),
            p.call.dir().unwrap_or_else(|| "-".to_string()),
            p.why().to_string(),
        ]
    }));
    emit(&crate::report::align(&rows))?;
    Ok(Exit::Ok)
}

fn to_json(p: &PendingHook) -> serde_json::Value {
    let mut item = serde_json::json!({
        "run_id": p.run_id,
        "call": p.call.call,
        "kind": p.call.kind.as_str(),
        "source": p.call.source.label(),
        "identity": p.call.dir(),
        "why": p.why(),
    });
    if let write::hooks::HookSource::CommandLine { sha256, .. } = &p.call.source {
        item["command_sha256"] = serde_json::json!(sha256.hex());
    }
    item
}

pub(crate) fn discard(o: &DiscardOptions) -> Result<Exit> {
    let operator = write::operator(None);
    let dropped = write::discard_hooks(&o.root, &o.target, &operator, o.started)?;
    if dropped.is_empty() {
        eprintln!(
            "rekey: run {} has no pending hook; nothing discarded",
            o.target.run_id
        );
    }
    for p in &dropped {
        eprintln!(
            "rekey: discarded the pending hook {} (call {}) of run {}{} (by {operator})",
            p.call.source,
            p.call.call,
            p.run_id,
            p.call
                .dir()
                .map(|d| format!(" for {d}"))
                .unwrap_or_default()
        );
    }
    Ok(Exit::Ok)
}
