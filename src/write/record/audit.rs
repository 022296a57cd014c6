//! The recovery audit log, `.rekey/audit.jsonl`: one JSON line per event, appended and synced.
//! A `requested` line is written only for an identity a started `recover` run will attempt, and
//! every one is paired with a `recovered` line carrying its outcome, by the run itself or, after a
//! crash, by the replay that finishes the run ([`settle`]). Also each run's backups pruned, and
//! each pending hook call dropped (`hook_dropped`) or discarded (`hook_discarded`). No secret:
//! names, digests, reasons.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{BufRead, Read, Write};
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

/// Records that `operator` asked run `run_id` to recover `ids`, because `reason`, each line
/// written as its identity comes. An identity that cannot be read stops the lines there, and
/// is the error.
pub(crate) fn requested(
    root: &Path,
    run_id: &str,
    time: DateTime<Utc>,
    operator: &str,
    reason: &str,
    ids: impl Iterator<Item = Result<IdentityId>>,
) -> Result<()> {
    let mut failed = None;
    let lines = ids.map_while(|id| match id {
        Ok(id) => Some(json!({
            "time": stamp(time),
            "event": "requested",
            "run_id": run_id,
            "operator": operator,
            "node": id.node(),
            "service": id.service(),
            "reason": reason,
        })),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    append(root, lines)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
    let unsettled = Unsettled::of(root, &report.run_id)?;
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
    let mut unsettled = unsettled.each()?;
    let mut lines = unsettled
        .by_ref()
        .map(|(node, service, operator, reason)| {
            let (outcome, detail, changed) = match line_of(&node, &service) {
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
    unsettled.end()?;
    match failed {
        Some(e) => Err(e).context("failed to read the run's report lines"),
        None => Ok(()),
    }
}

type Event = (String, String, String, String);

/// The `requested` lines of one run that have no `recovered` line yet. A run writes both kinds
/// in (node, service) order, each identity once (a replay writes only the `recovered` lines
/// missing, after those there are): then a first pass over the log checks that order and the
/// second meets the two kinds by merge, holding nothing. A log not in that order (edited by
/// hand) has the run's events held as sets instead.
enum Unsettled {
    Merged {
        path: PathBuf,
        run_id: String,
        len: u64,
    },
    Held(Vec<Event>),
}

impl Unsettled {
    fn of(root: &Path, run_id: &str) -> Result<Unsettled> {
        let path = path(root);
        let Some(len) = log_len(&path)? else {
            return Ok(Unsettled::Held(Vec::new()));
        };
        let (mut last_requested, mut last_settled) = (None::<Event>, None::<Event>);
        let mut in_order = true;
        for event in events(&path, run_id, len)? {
            let (kind, event) = event?;
            let last = match kind {
                Kind::Requested => &mut last_requested,
                Kind::Recovered => &mut last_settled,
            };
            in_order &= last.as_ref().is_none_or(|last| *last < event);
            *last = Some(event);
        }
        if in_order {
            return Ok(Unsettled::Merged {
                path,
                run_id: run_id.to_string(),
                len,
            });
        }
        let (mut requested, mut settled) = (BTreeSet::new(), BTreeSet::new());
        for event in events(&path, run_id, len)? {
            match event? {
                (Kind::Requested, event) => requested.insert(event),
                (Kind::Recovered, event) => settled.insert(event),
            };
        }
        Ok(Unsettled::Held(
            requested.difference(&settled).cloned().collect(),
        ))
    }

    /// Each unsettled event, in order; the log as it was when [`Unsettled::of`] read it (what
    /// is appended since, the lines being settled, is not read).
    fn each(self) -> Result<Each> {
        let (path, run_id, len) = match self {
            Unsettled::Held(events) => return Ok(Each::Held(events.into_iter())),
            Unsettled::Merged { path, run_id, len } => (path, run_id, len),
        };
        let only = |kind: Kind| -> Result<Events> {
            Ok(Box::new(events(&path, &run_id, len)?.filter(move |e| {
                e.as_ref().map_or(true, |(k, _)| *k == kind)
            })))
        };
        Ok(Each::Merged {
            requested: only(Kind::Requested)?,
            settled: only(Kind::Recovered)?.peekable(),
            failed: None,
        })
    }
}

type Events = Box<dyn Iterator<Item = Result<(Kind, Event)>>>;

/// The unsettled events of a run, met by merge or held; a read error ends them and is kept for
/// [`Each::end`].
enum Each {
    Merged {
        requested: Events,
        settled: std::iter::Peekable<Events>,
        failed: Option<anyhow::Error>,
    },
    Held(std::vec::IntoIter<Event>),
}

impl Iterator for Each {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let (requested, settled, failed) = match self {
            Each::Held(events) => return events.next(),
            Each::Merged {
                requested,
                settled,
                failed,
            } => (requested, settled, failed),
        };
        if failed.is_some() {
            return None;
        }
        'requested: loop {
            let event = match requested.next()? {
                Ok((_, event)) => event,
                Err(e) => {
                    *failed = Some(e);
                    return None;
                }
            };
            // Past every settled event before this one (an error is taken, to stop on).
            while let Some(taken) =
                settled.next_if(|s| s.as_ref().map_or(true, |(_, s)| *s < event))
            {
                if let Err(e) = taken {
                    *failed = Some(e);
                    return None;
                }
            }
            if matches!(settled.peek(), Some(Ok((_, s))) if *s == event) {
                continue 'requested;
            }
            return Some(event);
        }
    }
}

impl Each {
    fn end(self) -> Result<()> {
        match self {
            Each::Merged {
                failed: Some(e), ..
            } => Err(e),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requested,
    Recovered,
}

/// Whether the log does not end with a whole line (a crash cut its last one).
fn torn_end(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// The audit log's length now, or `None` when there is no log.
fn log_len(path: &Path) -> Result<Option<u64>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("failed to read the audit log {}", path.display()))
        }
    }
}

/// The (node, service, operator, reason) of the `requested` and `recovered` lines of a run, in
/// the log's order, read a line at a time from its first `len` bytes (the log holds every
/// recovery ever made).
fn events(
    path: &Path,
    run_id: &str,
    len: u64,
) -> Result<impl Iterator<Item = Result<(Kind, Event)>> + use<>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("failed to read the audit log {}", path.display()))?;
    let (path, run_id) = (path.to_path_buf(), run_id.to_string());
    let lines = std::io::BufReader::with_capacity(1 << 16, file.take(len)).lines();
    Ok(lines.filter_map(move |line| {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let e = anyhow::Error::new(e)
                    .context(format!("failed to read the audit log {}", path.display()));
                return Some(Err(e));
            }
        };
        if !line.contains(run_id.as_str()) {
            return None;
        }
        // A line torn by a crash: nothing to pair.
        let v = serde_json::from_str::<Value>(&line).ok()?;
        if v["run_id"] != run_id.as_str() {
            return None;
        }
        let kind = match v["event"].as_str() {
            Some("requested") => Kind::Requested,
            Some("recovered") => Kind::Recovered,
            _ => return None,
        };
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let event = (
            field("node"),
            field("service"),
            field("operator"),
            field("reason"),
        );
        Some(Ok((kind, event)))
    }))
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
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("failed to open the audit log {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, &file);
    // A last line torn by a crash is ended first, so that the first line appended stands alone
    // (glued to the torn one, it could not be read back, and its pairing would be lost).
    let written = torn_end(&file)
        .and_then(|torn| if torn { out.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| {
            lines
                .into_iter()
                .try_for_each(|line| writeln!(out, "{line}"))
        })
        .and_then(|()| out.flush())
        .and_then(|()| file.sync_data());
    written.with_context(|| format!("failed to append to the audit log {}", path.display()))?;
    if new {
        // A new log's name is durable with its first lines.
        crate::fsio::sync_dir(crate::fsio::beside(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
