//! `rekey recover`: rotate identities whose token expired (state `recover`), only those a person
//! selected, with a reason. Every selector must name something in the fleet; the CA key is
//! loaded before anything is audited; each `requested` line in `.rekey/audit.jsonl` is paired
//! with its outcome.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::classify::Action;
use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use crate::select::Selection;
use crate::survey::{Identity, Judged};
use crate::write::{self, Counted, Notes, RunCommand, Settings, Sink, Target, WriteRun};

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
    // The fleet is streamed twice and held never: a first pass checks the selection, says what
    // is recovered and counts; the second hands those identities to the batches as it judges
    // them. Held: the names of the identities recovered, which the audit lists before the
    // first batch.
    let (root, as_of) = (run.root().to_path_buf(), run.as_of());
    let policy = Some(run.policy().clone());
    let (targets, fleet) =
        crate::survey::read_under(&root, as_of, policy, None, |scope, judged| {
            let targets = chosen(o, judged)?;
            Ok::<_, anyhow::Error>((targets, write::end_facts(scope, judged.end())))
        })??;
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
    let started = o.write.started;
    let counted = Counted {
        command: RunCommand::Recover,
        notes: Notes {
            plan_file_sha256: None,
            rolls_back: None,
            reason: Some(o.reason.clone()),
            operator: Some(o.operator.clone()),
        },
        total: targets.len(),
        fleet,
    };
    // The identities the first pass chose, as the second judges them (an identity that no
    // longer needs recovering is left alone, and the audit settles it as not attempted).
    let pick = |i: Identity| {
        let target = targets
            .contains(&i.id)
            .then(|| Target::judged(&i, Action::Recover, false))??;
        Some((i.id, target))
    };
    // Audited once the CA key is loaded and the run has its id, before anything is written:
    // even a recovery cut short by a crash has its who, when and why on record, and the replay
    // that finishes it writes each outcome.
    write::run_streamed(run, counted, pick, |run| {
        write::audit_requested(
            &root,
            run.id(),
            started,
            &o.operator,
            &o.reason,
            targets.iter(),
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

/// The selected identities in state recover that a recovery rotates, in the fleet's order; each
/// one chosen is shown on stderr once the selection is known good, or it is said that none is.
/// A selector that names nothing is a usage error, as with a held fleet. Held: what is shown
/// of the chosen identities.
fn chosen(o: &Options, judged: &mut Judged<'_>) -> Result<BTreeSet<IdentityId>> {
    let mut checked = o.selection.checked();
    let mut chosen: Vec<(IdentityId, String)> = Vec::new();
    let mut targets = BTreeSet::new();
    for i in judged.by_ref() {
        if !checked.takes(i.node(), i.service()) || !needs_recover(&i) {
            continue;
        }
        if Target::judged(&i, Action::Recover, false).is_some() {
            targets.insert(i.id.clone());
        }
        chosen.push((i.id.clone(), reason_of(&i)));
    }
    let selected = checked.end()?;
    if chosen.is_empty() {
        let none = match selected {
            1 => "the selected identity is not".to_string(),
            n => format!("none of the {n} selected identities is"),
        };
        eprintln!("rekey: {none} in state recover (see rekey status); nothing to do");
    }
    let verb = if o.write.sink == Sink::Disk {
        "recovering"
    } else {
        "would recover"
    };
    for (id, reason) in chosen {
        eprintln!("{verb} {id}: {}", crate::values::Escaped::new(&reason));
    }
    Ok(targets)
}
