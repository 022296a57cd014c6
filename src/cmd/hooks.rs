//! `rekey hooks`: the hooks earlier runs left pending (failed, timed out, or cut short by a
//! crash). `retry` runs them now (re-resolved from the configuration as it is now), instead of
//! at the start of the next writing run; `list` shows them and runs nothing; `discard` drops
//! them by hand, journaled and audited, and runs nothing.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::exit::Exit;
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
    let failed = retried.failed();
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

/// `rekey hooks list`: the pending calls are read twice and held never: a first pass measures
/// the table's columns (and finds a journal that cannot be read before anything is printed),
/// the second prints each call as it comes.
pub(crate) fn list(o: &ListOptions) -> Result<Exit> {
    let root = crate::survey::open_root(&o.root)?;
    let mut table = crate::report::Aligned::default();
    table.measure(&HEADER.map(String::from));
    let mut pending = 0;
    write::each_pending_hook(&root, |p| {
        table.measure(&row_of(&p));
        pending += 1;
        Ok(())
    })?;
    if !o.json && pending == 0 {
        eprintln!("rekey: no hook is pending");
        return Ok(Exit::Ok);
    }
    let mut listed = Ok(());
    crate::out::emit_with(|w| {
        if o.json {
            // Byte for byte what `serde_json::to_string_pretty` makes of the list held whole.
            use serde::ser::{SerializeSeq, Serializer};
            let mut json = serde_json::Serializer::pretty(&mut *w);
            let mut items = json.serialize_seq(None)?;
            listed = write::each_pending_hook(&root, |p| {
                items
                    .serialize_element(&to_json(&p))
                    .map_err(anyhow::Error::from)
            });
            // A list cut short by an error stays unclosed: never a whole list of some calls.
            if listed.is_err() {
                return Ok(());
            }
            items.end()?;
            w.write_all(b"\n")
        } else {
            table.write(w, &HEADER.map(String::from))?;
            listed = write::each_pending_hook(&root, |p| Ok(table.write(w, &row_of(&p))?));
            Ok(())
        }
    })?;
    listed.context("failed to list the pending hooks")?;
    Ok(Exit::Ok)
}

/// The columns of `hooks list`'s table.
const HEADER: [&str; 6] = ["RUN", "CALL", "KIND", "SOURCE", "IDENTITY", "WHY"];

/// One pending call as a row of `hooks list`'s table.
fn row_of(p: &PendingHook) -> Vec<String> {
    vec![
        p.run_id.clone(),
        p.call.call.to_string(),
        p.call.kind.as_str().to_string(),
        p.call.source.label(),
        p.call.dir().unwrap_or_else(|| "-".to_string()),
        p.why().to_string(),
    ]
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
