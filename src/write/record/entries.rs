//! The journal's format: one JSON record a line, appended and synced one at a time, and what
//! a journal says is left unfinished. The protocol that writes it is in the parent module.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::calls::{HookCall, HookKind, HookStatus};
use crate::digest::Digest;

/// The journal format version: 2 names temporary files after the run
/// (`.rekey-new.<run-id>.<file>`); version 1 journals are still replayed.
pub const VERSION: u32 = 2;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    Start {
        version: u32,
        run_id: String,
        command: String,
        as_of: String,
        /// Who asked for the run (`recover`), for the audit lines a replay completes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        /// Why (`recover`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Prepare {
        batch: u32,
        identities: Vec<Change>,
    },
    Ready {
        batch: u32,
        identities: Vec<String>,
    },
    Commit {
        batch: u32,
    },
    Abort {
        batch: u32,
    },
    End {
        recovered: bool,
    },
    /// Hooks to run once their identities' files are in place (`batch`), or once the run has
    /// ended (post hooks, no batch). Journaled before the renames, so that none is lost.
    Hooks {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<u32>,
        calls: Vec<HookCall>,
    },
    /// A hook ran; `ok: false` leaves it pending (`status`: `failed` or `timed out`).
    #[serde(rename = "hook_done")]
    HookDone {
        call: u32,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<HookStatus>,
    },
    /// A pending call that can never run (its source or its identity is gone): never pending
    /// again.
    #[serde(rename = "hook_dropped")]
    HookDropped {
        call: u32,
        reason: String,
    },
    /// A pending call an operator discarded (`rekey hooks discard`): never pending again.
    #[serde(rename = "hook_discarded")]
    HookDiscarded {
        call: u32,
        operator: String,
    },
}

impl Record {
    /// The record of a call that ran and ended with `status`.
    pub fn hook_done(call: u32, status: HookStatus) -> Record {
        Record::HookDone {
            call,
            ok: status == HookStatus::Ok,
            status: (status != HookStatus::Ok).then_some(status),
        }
    }
}

/// The files of one identity that a batch replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub node: String,
    pub service: String,
    pub files: Vec<FileChange>,
}

impl Change {
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    pub name: String,
    pub old_sha256: Digest,
    pub new_sha256: Digest,
}

/// An open journal, appended to and synced record by record.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("failed to create journal {}", path.display()))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn open(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open journal {}", path.display()))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record and makes it durable. A record that cannot be written whole (the
    /// disk is full, say) is cut off again, so that a later record never follows a torn one.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("journal records always serialize");
        line.push('\n');
        let before = self.file.metadata().map(|m| m.len());
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if written.is_err()
            && let Ok(len) = before
        {
            let _ = self.file.set_len(len);
        }
        written.with_context(|| format!("failed to write journal {}", self.path.display()))
    }
}

/// Reads a journal. A last line cut short by a crash is ignored: it was never synced whole, so
/// the step it announced never began.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file =
        File::open(path).with_context(|| format!("failed to read journal {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("failed to read journal {}", path.display()))?;
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => anyhow::bail!("journal {} line {} is corrupt: {e}", path.display(), i + 1),
        }
    }
    Ok(records)
}

/// What replay must do for one unfinished batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// `ready` was journaled: finish these identities' renames.
    Finish { batch: u32, changes: Vec<Change> },
    /// Only `prepare`: remove temporary files and backups; nothing was renamed.
    Undo { batch: u32, changes: Vec<Change> },
}

/// The identities a batch marked ready, when it did.
fn ready_in(records: &[Record], batch: u32) -> Option<BTreeSet<&String>> {
    records.iter().find_map(|r| match r {
        Record::Ready {
            batch: b,
            identities,
        } if *b == batch => Some(identities.iter().collect()),
        _ => None,
    })
}

fn closed(records: &[Record], batch: u32, by_commit: bool) -> bool {
    records.iter().any(|r| match r {
        Record::Commit { batch: b } => *b == batch,
        Record::Abort { batch: b } => *b == batch && !by_commit,
        _ => false,
    })
}

/// The identities of the batches a journal committed (pure): each wholly new on disk.
pub fn committed(records: &[Record]) -> Vec<Change> {
    let mut out = Vec::new();
    for record in records {
        if let Record::Prepare { batch, identities } = record
            && closed(records, *batch, true)
        {
            let ready = ready_in(records, *batch).unwrap_or_default();
            out.extend(
                identities
                    .iter()
                    .filter(|c| ready.contains(&c.key()))
                    .cloned(),
            );
        }
    }
    out
}

/// A hook call still to run, and how its last attempt ended (`None`: it never ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub call: HookCall,
    pub last: Option<HookStatus>,
}

/// The hook calls of a journal still to run (pure): a deploy call whose identity's files are in
/// place (its batch committed), or a post call, that has neither run successfully nor been
/// dropped or discarded.
pub fn pending_hooks(records: &[Record]) -> Vec<Pending> {
    let placed: BTreeSet<String> = committed(records).iter().map(Change::key).collect();
    let mut closed = BTreeSet::new();
    let mut last = std::collections::BTreeMap::new();
    for r in records {
        match r {
            Record::HookDone { call, ok: true, .. }
            | Record::HookDropped { call, .. }
            | Record::HookDiscarded { call, .. } => {
                closed.insert(*call);
            }
            Record::HookDone { call, status, .. } => {
                last.insert(*call, status.unwrap_or(HookStatus::Failed));
            }
            _ => {}
        }
    }
    records
        .iter()
        .filter_map(|r| match r {
            Record::Hooks { calls, .. } => Some(calls),
            _ => None,
        })
        .flatten()
        .filter(|c| !closed.contains(&c.call))
        .filter(|c| match (c.kind, &c.node, &c.service) {
            (HookKind::Deploy, Some(node), Some(service)) => {
                placed.contains(&format!("{node}/{service}"))
            }
            (HookKind::Deploy, _, _) => false,
            (HookKind::Post, _, _) => true,
        })
        .map(|c| Pending {
            call: c.clone(),
            last: last.get(&c.call).copied(),
        })
        .collect()
}

/// The batches of a journal that were neither committed nor aborted (pure).
pub fn unfinished(records: &[Record]) -> Vec<Unfinished> {
    let mut out = Vec::new();
    for record in records {
        let Record::Prepare { batch, identities } = record else {
            continue;
        };
        if closed(records, *batch, false) {
            continue;
        }
        match ready_in(records, *batch) {
            Some(ready) => {
                let (finish, undo): (Vec<Change>, Vec<Change>) = identities
                    .iter()
                    .cloned()
                    .partition(|c| ready.contains(&c.key()));
                if !undo.is_empty() {
                    out.push(Unfinished::Undo {
                        batch: *batch,
                        changes: undo,
                    });
                }
                out.push(Unfinished::Finish {
                    batch: *batch,
                    changes: finish,
                });
            }
            None => out.push(Unfinished::Undo {
                batch: *batch,
                changes: identities.clone(),
            }),
        }
    }
    out
}

/// The writing command a run was made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunCommand {
    Apply,
    Rotate,
    Recover,
    Rollback,
}

impl RunCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            RunCommand::Apply => "apply",
            RunCommand::Rotate => "rotate",
            RunCommand::Recover => "recover",
            RunCommand::Rollback => "rollback",
        }
    }

    /// The command a journal's `start` record names, if it is one.
    pub fn named(name: &str) -> Option<RunCommand> {
        [Self::Apply, Self::Rotate, Self::Recover, Self::Rollback]
            .into_iter()
            .find(|c| c.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(node: &str) -> Change {
        Change {
            node: node.into(),
            service: "s".into(),
            files: vec![FileChange {
                name: "cert.pem".into(),
                old_sha256: Digest::of(b"a"),
                new_sha256: Digest::of(b"b"),
            }],
        }
    }

    #[test]
    fn replay_finishes_ready_batches_and_undoes_the_rest() {
        let start = Record::Start {
            version: 1,
            run_id: "r".into(),
            command: "rotate".into(),
            as_of: "t".into(),
            operator: None,
            reason: None,
        };
        let prepare = |batch, nodes: &[&str]| Record::Prepare {
            batch,
            identities: nodes.iter().map(|n| change(n)).collect(),
        };
        let ready = |batch, nodes: &[&str]| Record::Ready {
            batch,
            identities: nodes.iter().map(|n| format!("{n}/s")).collect(),
        };
        let cases: Vec<(&str, Vec<Record>, Vec<Unfinished>)> = vec![
            ("nothing begun", vec![start.clone()], vec![]),
            (
                "committed",
                vec![
                    start.clone(),
                    prepare(0, &["a"]),
                    ready(0, &["a"]),
                    Record::Commit { batch: 0 },
                ],
                vec![],
            ),
            (
                "aborted",
                vec![prepare(0, &["a"]), Record::Abort { batch: 0 }],
                vec![],
            ),
            (
                "prepared only: undo",
                vec![prepare(0, &["a", "b"])],
                vec![Unfinished::Undo {
                    batch: 0,
                    changes: vec![change("a"), change("b")],
                }],
            ),
            (
                "ready: finish",
                vec![prepare(0, &["a"]), ready(0, &["a"])],
                vec![Unfinished::Finish {
                    batch: 0,
                    changes: vec![change("a")],
                }],
            ),
            (
                "ready for some: finish those, undo the others",
                vec![prepare(0, &["a", "b"]), ready(0, &["b"])],
                vec![
                    Unfinished::Undo {
                        batch: 0,
                        changes: vec![change("a")],
                    },
                    Unfinished::Finish {
                        batch: 0,
                        changes: vec![change("b")],
                    },
                ],
            ),
            (
                "second batch interrupted",
                vec![
                    prepare(0, &["a"]),
                    ready(0, &["a"]),
                    Record::Commit { batch: 0 },
                    prepare(1, &["b"]),
                ],
                vec![Unfinished::Undo {
                    batch: 1,
                    changes: vec![change("b")],
                }],
            ),
        ];
        for (name, records, want) in cases {
            assert_eq!(unfinished(&records), want, "{name}");
        }
        let committed_run = [
            prepare(0, &["a", "b"]),
            ready(0, &["b"]),
            Record::Commit { batch: 0 },
            prepare(1, &["c"]),
            ready(1, &["c"]),
        ];
        assert_eq!(committed(&committed_run), vec![change("b")]);
    }

    #[test]
    fn hook_calls_name_their_source_and_old_journals_still_read() {
        use crate::write::record::calls::HookSource;
        let cases = [
            (
                "reload",
                r#"{"call":1,"kind":"deploy","node":"n","service":"s","source":"reload"}"#,
                HookSource::Reload,
            ),
            (
                "a hooks folder executable",
                r#"{"call":1,"kind":"post","source":"hooks/post/notify"}"#,
                HookSource::Folder {
                    kind: HookKind::Post,
                    name: "notify".into(),
                },
            ),
            (
                "the previous release: command and shell read, only the digest kept",
                r#"{"call":1,"kind":"deploy","source":"--deploy-hook","command":"touch /tmp/x","shell":true}"#,
                HookSource::CommandLine {
                    kind: HookKind::Deploy,
                    sha256: Digest::of(b"touch /tmp/x"),
                    position: 0,
                },
            ),
            (
                "the previous release's folder hook",
                r#"{"call":1,"kind":"deploy","source":"hooks/deploy/a","command":"/x/hooks/deploy/a","shell":false}"#,
                HookSource::Folder {
                    kind: HookKind::Deploy,
                    name: "a".into(),
                },
            ),
            (
                "a path planted as a folder hook's name",
                r#"{"call":1,"kind":"deploy","source":"hooks/deploy/../../bin/sh"}"#,
                HookSource::Unknown("hooks/deploy/../../bin/sh".into()),
            ),
            (
                "a command-line hook with no digest",
                r#"{"call":1,"kind":"post","source":"--post-hook"}"#,
                HookSource::Unknown("--post-hook".into()),
            ),
        ];
        for (name, line, want) in cases {
            let call: HookCall =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(call.source, want, "{name}");
            let again = serde_json::to_string(&call).unwrap();
            assert!(
                !again.contains("command\""),
                "{name}: never written back: {again}"
            );
            assert!(!again.contains("touch"), "{name}: {again}");
            assert_eq!(
                serde_json::from_str::<HookCall>(&again).unwrap(),
                call,
                "{name}"
            );
        }
        let unknown = r#"{"call":1,"kind":"post","source":"reload","extra":1}"#;
        assert!(
            serde_json::from_str::<HookCall>(unknown).is_err(),
            "unknown fields refused"
        );
    }

    #[test]
    fn dropped_and_discarded_calls_are_no_longer_pending() {
        use crate::write::record::calls::HookSource;
        let call = |n| HookCall {
            call: n,
            kind: HookKind::Post,
            node: None,
            service: None,
            source: HookSource::Reload,
            not_after: None,
        };
        let records = vec![
            Record::Hooks {
                batch: None,
                calls: (1..=5).map(call).collect(),
            },
            Record::hook_done(1, HookStatus::Ok),
            Record::hook_done(2, HookStatus::TimedOut),
            Record::HookDropped {
                call: 3,
                reason: "gone".into(),
            },
            Record::HookDiscarded {
                call: 4,
                operator: "alice".into(),
            },
        ];
        let left: Vec<(u32, Option<HookStatus>)> = pending_hooks(&records)
            .into_iter()
            .map(|p| (p.call.call, p.last))
            .collect();
        assert_eq!(left, [(2, Some(HookStatus::TimedOut)), (5, None)]);
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_torn_middle_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let good = serde_json::to_string(&Record::Commit { batch: 3 }).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"op\":\"prep")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![Record::Commit { batch: 3 }]);
        std::fs::write(&path, format!("{{\"op\":\"prep\n{good}\n")).unwrap();
        assert!(read(&path).is_err());
    }
}
