//! The journal's format: one JSON record a line, appended and synced one at a time, and read
//! back a line at a time. What a journal leaves unfinished is read by the `left` module; the
//! protocol that writes it is in the write module's `journal`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::calls::{HookCall, HookStatus};
use crate::digest::Digest;
use crate::names::IdentityId;
use crate::problem::Problem;

/// The journal format version: 2 names temporary files after the run
/// (`.rekey-new.<run-id>.<file>`); 3 adds what a replayed report needs to say what the run's own
/// would have (the `unchanged`, `failed` and `stopped` records, and an `abort`'s reason).
/// Versions 1 and 2 are still replayed; a journal of a later version is refused, by name.
pub(crate) const VERSION: u32 = 3;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Record {
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
    /// A batch undone before its `ready`; `reason`: what each identity it prepared is reported
    /// as (left as it was), when the run or a replay said.
    Abort {
        batch: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
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
    /// A CA rotation stage's change of `ca/`, one atomic exchange of the directory with the
    /// tree the run built (`write::ca_tree`): `step` is `prepare` (the tree is being built),
    /// `ready` (it is durable), `commit` (`ca/` is the new tree) or `abort`; `from` and `to` are
    /// the stages before and after. `purge_sha256`: the digest of a retired CA key file the
    /// stage removes from the run's copy of the old tree.
    Ca {
        step: CaStep,
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purge_sha256: Option<Digest>,
    },
    /// A pending call an operator discarded (`rekey hooks discard`): never pending again.
    #[serde(rename = "hook_discarded")]
    HookDiscarded {
        call: u32,
        operator: String,
    },
    /// The identities of a batch that the run left as they were before staging anything of
    /// theirs (skipped or failed, with why), journaled before the batch's `prepare` (or alone,
    /// when nothing of the batch was staged), so that a replayed report has their lines as the
    /// run's own would have.
    Unchanged {
        batch: u32,
        identities: Vec<Untouched>,
    },
    /// Identities of a prepared batch that failed, with why: before its `ready` (journaled just
    /// before it: left as they were), or when their renames found the directory moved away
    /// (journaled before the batch's `commit`).
    Failed {
        batch: u32,
        identities: Vec<Failure>,
    },
    /// The run stopped before its end (a full filesystem, a signal), and why: the report's
    /// `stopped`. The identities it does not reach follow in `unchanged` records.
    Stopped {
        reason: String,
    },
}

/// The identity a journal line names, or why it names none.
fn identity_named(node: &str, service: &str) -> Result<IdentityId, Problem> {
    IdentityId::new(node, service)
        .ok_or_else(|| Problem::new(format!("{node}/{service} is not an identity's name")))
}

/// An identity a batch left as it was before staging it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawUntouched", into = "RawUntouched")]
pub(crate) struct Untouched {
    pub(crate) id: IdentityId,
    pub(crate) left: LeftAs,
    pub(crate) reason: String,
}

/// An identity a prepared batch did not change where it stood, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFailure", into = "RawFailure")]
pub(crate) struct Failure {
    pub(crate) id: IdentityId,
    pub(crate) reason: String,
}

/// A failure as a journal line holds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    node: String,
    service: String,
    reason: String,
}

impl TryFrom<RawFailure> for Failure {
    type Error = Problem;

    fn try_from(raw: RawFailure) -> Result<Failure, Problem> {
        let id = identity_named(&raw.node, &raw.service)?;
        Ok(Failure {
            id,
            reason: raw.reason,
        })
    }
}

impl From<Failure> for RawFailure {
    fn from(f: Failure) -> RawFailure {
        RawFailure {
            node: f.id.node().to_string(),
            service: f.id.service().to_string(),
            reason: f.reason,
        }
    }
}

/// How a run left an identity it did not stage: its report line's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeftAs {
    Skipped,
    Failed,
}

/// An untouched identity as a journal line holds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUntouched {
    node: String,
    service: String,
    outcome: LeftAs,
    reason: String,
}

impl TryFrom<RawUntouched> for Untouched {
    type Error = Problem;

    fn try_from(raw: RawUntouched) -> Result<Untouched, Problem> {
        let id = identity_named(&raw.node, &raw.service)?;
        Ok(Untouched {
            id,
            left: raw.outcome,
            reason: raw.reason,
        })
    }
}

impl From<Untouched> for RawUntouched {
    fn from(u: Untouched) -> RawUntouched {
        RawUntouched {
            node: u.id.node().to_string(),
            service: u.id.service().to_string(),
            outcome: u.left,
            reason: u.reason,
        }
    }
}

impl Record {
    /// The record of a call that ran and ended with `status`.
    pub(crate) fn hook_done(call: u32, status: HookStatus) -> Record {
        Record::HookDone {
            call,
            ok: status == HookStatus::Ok,
            status: (status != HookStatus::Ok).then_some(status),
        }
    }
}

/// The files of one identity that a batch replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawChange", into = "RawChange")]
pub(crate) struct Change {
    pub(crate) id: IdentityId,
    pub(crate) files: Vec<FileChange>,
}

impl Change {
    /// How `ready` names the identity (`node/service`).
    pub(crate) fn key(&self) -> String {
        self.id.to_string()
    }
}

/// A change as a journal line holds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    node: String,
    service: String,
    files: Vec<FileChange>,
}

impl TryFrom<RawChange> for Change {
    type Error = Problem;

    fn try_from(raw: RawChange) -> Result<Change, Problem> {
        let id = identity_named(&raw.node, &raw.service)?;
        Ok(Change {
            id,
            files: raw.files,
        })
    }
}

impl From<Change> for RawChange {
    fn from(change: Change) -> RawChange {
        RawChange {
            node: change.id.node().to_string(),
            service: change.id.service().to_string(),
            files: change.files,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileChange {
    pub(crate) name: String,
    pub(crate) old_sha256: Digest,
    pub(crate) new_sha256: Digest,
}

/// An open journal, appended to and synced record by record.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    pub(crate) fn create(path: &Path) -> Result<Journal> {
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

    /// Opens a journal to append to it. A last line cut short by a crash (never synced whole:
    /// without its newline, or with a newline but torn inside, as a power cut can leave an
    /// unsynced append) is cut off first, so that what is appended now never follows it.
    pub(crate) fn open(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open journal {}", path.display()))?;
        let whole = whole_end(&file)
            .with_context(|| format!("failed to read journal {}", path.display()))?;
        if whole.cut {
            file.set_len(whole.len)
                .and_then(|()| file.sync_data())
                .with_context(|| {
                    format!("failed to cut the torn end of journal {}", path.display())
                })?;
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record and makes it durable. A record that cannot be written whole (the
    /// disk is full, say) is cut off again, so that a later record never follows a torn one.
    pub(crate) fn append(&mut self, record: &Record) -> Result<()> {
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

/// Where a journal's whole records end, and whether something follows them.
struct WholeEnd {
    len: u64,
    cut: bool,
}

/// [`whole_len`] of the journal `file`, reading only its end (its last lines), never the whole.
fn whole_end(file: &File) -> std::io::Result<WholeEnd> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 16;
    let size = file.metadata()?.len();
    let (mut tail, mut start) = (Vec::new(), size);
    // Back a chunk at a time until the tail holds two newlines (its last line whole) or all.
    while start > 0 && tail.iter().filter(|b| **b == b'\n').count() < 2 {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)?;
        chunk.extend_from_slice(&tail);
        (tail, start) = (chunk, from);
    }
    let len = start + whole_len(&tail) as u64;
    Ok(WholeEnd {
        len,
        cut: len < size,
    })
}

/// How many bytes of a journal's `bytes` are whole records: a trailing piece without its
/// newline is not, nor a last line that does not parse.
fn whole_len(bytes: &[u8]) -> usize {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
        return 0;
    };
    let start = bytes[..end - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    match serde_json::from_slice::<Record>(&bytes[start..end - 1]) {
        Ok(_) => end,
        Err(_) => start,
    }
}

/// Reads a journal. A last line cut short by a crash is ignored: it was never synced whole, so
/// the step it announced never began.
#[cfg(test)]
pub(crate) fn read(path: &Path) -> Result<Vec<Record>> {
    records(path)?.collect()
}

/// A journal's records read a line at a time, never held whole. A last line cut short by a
/// crash is ignored: it was never synced whole, so the step it announced never began.
pub(crate) struct Records {
    path: PathBuf,
    lines: std::iter::Peekable<std::io::Lines<BufReader<File>>>,
    /// The number of the line read last.
    n: usize,
}

/// The records of the journal at `path`, from its start.
pub(crate) fn records(path: &Path) -> Result<Records> {
    let file =
        File::open(path).with_context(|| format!("failed to read journal {}", path.display()))?;
    Ok(Records {
        path: path.to_path_buf(),
        lines: BufReader::new(file).lines().peekable(),
        n: 0,
    })
}

/// What a damaged journal's refusal asks of a person.
pub(crate) const DAMAGED: &str = "the journal is damaged and its run cannot be replayed. Restore \
     it from a backup of the store; or have a person check that run's identities (each wholly \
     old or wholly new), remove its temporary files (.rekey-new.*) and move its directory out \
     of .rekey/runs";

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let line = self.lines.next()?;
        self.n += 1;
        let path = self.path.display();
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(e).context(format!("failed to read journal {path}"))),
        };
        match serde_json::from_str(&line) {
            Ok(record) => Some(Ok(record)),
            // The last line, cut short: the end.
            Err(_) if self.lines.peek().is_none() => None,
            Err(e) => Some(Err(anyhow::anyhow!(
                "journal {path} line {} is corrupt: {e}: {DAMAGED}",
                self.n
            ))),
        }
    }
}

/// Whether the journal at `path` says its run ended, read a line at a time (a journal holds a
/// record per batch and per hook call: never held whole for this). A last line cut short, as a
/// crash leaves it, is not an end.
pub(crate) fn ended(path: &Path) -> Result<bool> {
    let file =
        File::open(path).with_context(|| format!("failed to read journal {}", path.display()))?;
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read journal {}", path.display()))?;
        // Only an `end` record can say so: the others are not parsed.
        if line.contains("\"end\"") && matches!(serde_json::from_str(&line), Ok(Record::End { .. }))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The writing command a run was made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunCommand {
    Apply,
    Rotate,
    Recover,
    Rollback,
    #[serde(rename = "ca begin")]
    CaBegin,
    #[serde(rename = "ca switch")]
    CaSwitch,
    #[serde(rename = "ca finish")]
    CaFinish,
    #[serde(rename = "ca abort")]
    CaAbort,
}

/// A step of a CA rotation stage's change of `ca/` (see [`Record::Ca`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CaStep {
    Prepare,
    Ready,
    Commit,
    Abort,
}

impl RunCommand {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunCommand::Apply => "apply",
            RunCommand::Rotate => "rotate",
            RunCommand::Recover => "recover",
            RunCommand::Rollback => "rollback",
            RunCommand::CaBegin => "ca begin",
            RunCommand::CaSwitch => "ca switch",
            RunCommand::CaFinish => "ca finish",
            RunCommand::CaAbort => "ca abort",
        }
    }

    /// The command a journal's `start` record names, if it is one.
    pub(crate) fn named(name: &str) -> Option<RunCommand> {
        [
            Self::Apply,
            Self::Rotate,
            Self::Recover,
            Self::Rollback,
            Self::CaBegin,
            Self::CaSwitch,
            Self::CaFinish,
            Self::CaAbort,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }
}

/// Records the journal's tests build from: a change of identity `<node>/s`, a batch's `prepare`
/// and `ready` naming such identities.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    pub(crate) fn change(node: &str) -> Change {
        Change {
            id: IdentityId::new(node, "s").unwrap(),
            files: vec![FileChange {
                name: "cert.pem".into(),
                old_sha256: Digest::of(b"a"),
                new_sha256: Digest::of(b"b"),
            }],
        }
    }

    pub(crate) fn prepare(batch: u32, nodes: &[&str]) -> Record {
        Record::Prepare {
            batch,
            identities: nodes.iter().map(|n| change(n)).collect(),
        }
    }

    pub(crate) fn ready(batch: u32, nodes: &[&str]) -> Record {
        Record::Ready {
            batch,
            identities: nodes.iter().map(|n| format!("{n}/s")).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
