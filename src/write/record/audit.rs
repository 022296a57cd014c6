//! The recovery audit log, `.rekey/audit.jsonl`: one JSON line per event, appended and synced.
//! A `requested` line is written only for an identity a started `recover` run will attempt, and
//! every one is paired with a `recovered` line carrying its outcome, by the run itself or, after a
//! crash, by the replay that finishes the run ([`settle`]). Also each run's backups pruned, and
//! each pending hook call dropped (`hook_dropped`) or discarded (`hook_discarded`). No secret:
//! names, digests, reasons.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::calls::HookCall;
use super::run_report::{IdentityReport, Report};
use crate::classify::stamp;
use crate::names::IdentityId;

/// Who the audit log names: `given` (`--operator`, which the command line refuses empty), else
/// a non-empty `SUDO_USER`, else a non-empty `USER`, else `uid N`. Never empty.
pub(crate) fn operator(given: Option<String>) -> String {
    let named = |name: Option<String>| name.filter(|n| !n.trim().is_empty());
    named(given)
        .or_else(|| named(std::env::var("SUDO_USER").ok()))
        .or_else(|| named(std::env::var("USER").ok()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

fn path(root: &Path) -> PathBuf {
    crate::store::Store::of(root).audit_log()
}

/// Records that `operator` asked run `run_id` to recover `ids`, because `reason`.
pub(crate) fn requested<'a>(
    root: &Path,
    run_id: &str,
    time: DateTime<Utc>,
    operator: &str,
    reason: &str,
    ids: impl Iterator<Item = &'a IdentityId>,
) -> Result<()> {
    let lines = ids.map(|id| {
        json!({
            "time": stamp(time),
            "event": "requested",
            "run_id": run_id,
            "operator": operator,
            "node": id.node(),
            "service": id.service(),
            "reason": reason,
        })
    });
    append(root, lines)
}

/// Writes a `recovered` line, with its outcome from `report`, for every identity that the
/// report's run requested and that has none yet. Identities the run never reached (it was
/// interrupted) are `failed`, unchanged. `identities` are the report's lines, in its (node,
/// service) order, taken as they come (merged with the requests, never held).
pub(crate) fn settle(
    root: &Path,
    report: &Report,
    identities: impl Iterator<Item = std::io::Result<IdentityReport>>,
    time: DateTime<Utc>,
) -> Result<()> {
    let (requested, settled) = events_of(root, &report.run_id)?;
    let mut identities = identities.peekable();
    let mut failed = None;
    let mut line_of = |node: &str, service: &str| -> Option<IdentityReport> {
        while let Some(next) = identities.peek() {
            match next {
                Ok(i) if (i.node.as_str(), i.service.as_str()) < (node, service) => {}
                Ok(i) if (i.node.as_str(), i.service.as_str()) == (node, service) => {
                    return Some(i.clone());
                }
                Ok(_) => return None,
                Err(_) => {
                    if let Some(Err(e)) = identities.next() {
                        failed = Some(e);
                    }
                    return None;
                }
            }
            identities.next();
        }
        None
    };
    let mut lines = requested
        .difference(&settled)
        .map(|(node, service, operator, reason)| {
            let (outcome, detail, changed) = match line_of(node, service) {
                Some(i) => (
                    json!(i.outcome),
                    i.reason,
                    i.files
                        .iter()
                        .map(|f| {
                            json!({
                                "file": f.name,
                                "old_sha256": f.old_sha256,
                                "new_sha256": f.new_sha256,
                            })
                        })
                        .collect(),
                ),
                None => (
                    json!("failed"),
                    "not attempted: the run ended before it".to_string(),
                    Vec::new(),
                ),
            };
            json!({
                "time": stamp(time),
                "event": "recovered",
                "as_of": stamp(report.as_of),
                "run_id": report.run_id,
                "operator": operator,
                "node": node,
                "service": service,
                "outcome": outcome,
                "changed": changed,
                "reason": reason,
                "detail": detail,
            })
        })
        .peekable();
    if lines.peek().is_some() {
        append(root, &mut lines)?;
    }
    drop(lines);
    match failed {
        Some(e) => Err(e).context("failed to read the run's report lines"),
        None => Ok(()),
    }
}

type Event = (String, String, String, String);

/// The (node, service, operator, reason) of the `requested` and of the `recovered` lines of a
/// run, as sets.
fn events_of(root: &Path, run_id: &str) -> Result<(BTreeSet<Event>, BTreeSet<Event>)> {
    let path = path(root);
    let file = match std::fs::File::open(&path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("failed to read the audit log {}", path.display()));
        }
    };
    let (mut requested, mut settled) = (BTreeSet::new(), BTreeSet::new());
    // A line at a time: the log holds every recovery ever made.
    for line in file
        .into_iter()
        .flat_map(|f| std::io::BufReader::new(f).lines())
    {
        let line =
            line.with_context(|| format!("failed to read the audit log {}", path.display()))?;
        if !line.contains(run_id) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue; // a line torn by a crash: nothing to pair
        };
        if v["run_id"] != run_id {
            continue;
        }
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let event = (
            field("node"),
            field("service"),
            field("operator"),
            field("reason"),
        );
        match v["event"].as_str() {
            Some("requested") => requested.insert(event),
            Some("recovered") => settled.insert(event),
            _ => false,
        };
    }
    Ok((requested, settled))
}

/// Records that the backups of run `run_id` (`files` old credentials) were removed.
pub(crate) fn pruned(root: &Path, run_id: &str, files: usize, time: DateTime<Utc>) -> Result<()> {
    let line = json!({
        "time": stamp(time),
        "event": "pruned",
        "run_id": run_id,
        "files": files,
    });
    append(root, [line])
}

/// What the audit log says of one hook call.
pub(crate) struct HookLine<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) call: &'a HookCall,
}

impl HookLine<'_> {
    fn line(&self, event: &str, time: DateTime<Utc>, field: &str, value: &str) -> Value {
        let mut line = json!({
            "time": stamp(time),
            "event": event,
            "run_id": self.run_id,
            "call": self.call.call,
            "kind": self.call.kind.as_str(),
            "source": self.call.source.label(),
        });
        if let Some(id) = &self.call.id {
            line["node"] = json!(id.node());
            line["service"] = json!(id.service());
        }
        line[field] = json!(value);
        line
    }
}

/// Records that a pending hook call was dropped, because `reason` (its source or identity is
/// gone): it will never run.
pub(crate) fn hook_dropped(
    root: &Path,
    hook: &HookLine<'_>,
    reason: &str,
    time: DateTime<Utc>,
) -> Result<()> {
    append(root, [hook.line("hook_dropped", time, "reason", reason)])
}

/// Records that `operator` discarded a pending hook call (`rekey hooks discard`).
pub(crate) fn hook_discarded(
    root: &Path,
    hook: &HookLine<'_>,
    operator: &str,
    time: DateTime<Utc>,
) -> Result<()> {
    append(
        root,
        [hook.line("hook_discarded", time, "operator", operator)],
    )
}

/// Appends lines to the audit log, as they come (never held together), and syncs them.
fn append(root: &Path, lines: impl IntoIterator<Item = Value>) -> Result<()> {
    let path = path(root);
    let new = std::fs::symlink_metadata(&path).is_err();
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("failed to open the audit log {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, &file);
    let written = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush())
        .and_then(|()| file.sync_data());
    written.with_context(|| format!("failed to append to the audit log {}", path.display()))?;
    if new {
        // A new log's name is durable with its first lines.
        crate::fsio::sync_dir(crate::fsio::beside(&path))?;
    }
    Ok(())
}
