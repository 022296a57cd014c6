//! `rekey recover`: rotate identities whose token expired (state `recover`), only those a person
//! selected, with a reason. Every selector must name something in the fleet; the CA key is
//! loaded before anything is audited; each `requested` line in `.rekey/audit.jsonl` is paired
//! with its outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::classify::Action;
use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use crate::select::Selection;
use crate::survey::{Identity, Survey};
use crate::write::{self, Notes, Rotating, RunCommand, Settings, Sink, Target, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub selection: Selection,
    pub reason: String,
    pub operator: String,
    pub write: Settings,
}

fn needs_recover(i: &Identity) -> bool {
    i.credentials()
        .any(|c| c.verdict.state.action() == Action::Recover)
}

/// The operator's name for the audit log: `--operator`, else `SUDO_USER`, else `USER`, else
/// `uid N` (`write::operator`, the one rule).
pub fn operator_name(given: Option<String>) -> String {
    crate::write::operator(given)
}

pub(crate) fn recover(o: &Options) -> Result<Exit> {
    if o.reason.trim().is_empty() {
        return Err(
            UsageError("--reason must say why these identities are recovered".into()).into(),
        );
    }
    let run = WriteRun::begin(&o.root, o.as_of, &o.write)?;
    let survey = run.survey()?;
    let targets: BTreeMap<IdentityId, Target> = chosen(o, &survey)?
        .into_iter()
        .filter_map(|i| {
            let target = Target::judged(i, Action::Recover, false)?;
            Some((i.id.clone(), target))
        })
        .collect();
    if targets.is_empty() {
        return Ok(Exit::Ok);
    }
    if run.dry() {
        let these = match targets.len() {
            1 => "this identity".to_string(),
            n => format!("these {n} identities"),
        };
        eprintln!("rekey: nothing was written; add --yes to recover {these}");
    }
    let root = run.root().to_path_buf();
    let started = o.write.started;
    let notes = Notes {
        plan_file_sha256: None,
        rolls_back: None,
        reason: Some(o.reason.clone()),
        operator: Some(o.operator.clone()),
    };
    // Audited once the CA key is loaded and the run has its id, before anything is written:
    // even a recovery cut short by a crash has its who, when and why on record, and the replay
    // that finishes it writes each outcome.
    let asked = Rotating {
        command: RunCommand::Recover,
        targets: targets.clone(),
        refused: Vec::new(),
        notes,
    };
    write::rotate(run, &survey, asked, |run| {
        write::audit_requested(
            &root,
            run.id(),
            started,
            &o.operator,
            &o.reason,
            targets.keys(),
        )
    })
    .map(|(_, exit)| exit)
}

/// Why an identity needs recovering, in the words of its first credential's verdict (which tells
/// people elsewhere to run `rekey recover`; here they are running it).
fn reason_of(i: &Identity) -> String {
    i.credentials()
        .map(|c| c.verdict.without_advice().into_owned())
        .next()
        .unwrap_or_default()
}

/// The selected identities in state recover, each shown on stderr; says so when none are.
fn chosen<'a>(o: &Options, survey: &'a Survey) -> Result<Vec<&'a Identity>> {
    let selected = o.selection.resolve(&survey.identities)?;
    let chosen: Vec<&Identity> = selected
        .iter()
        .copied()
        .filter(|i| needs_recover(i))
        .collect();
    if chosen.is_empty() {
        let none = match selected.len() {
            1 => "the selected identity is not".to_string(),
            n => format!("none of the {n} selected identities is"),
        };
        eprintln!("rekey: {none} in state recover (see rekey status); nothing to do");
    }
    for i in &chosen {
        let reason = reason_of(i);
        let verb = if o.write.sink == Sink::Disk {
            "recovering"
        } else {
            "would recover"
        };
        eprintln!("{verb} {}: {}", i.id, crate::values::Escaped::new(&reason));
    }
    Ok(chosen)
}
