//! `rekey recover`: rotate identities whose token expired (state `recover`), only those a person
//! selected, with a reason. Every selector must name something in the fleet; the CA key is
//! loaded before anything is audited; each `requested` line in `.rekey/audit.jsonl` is paired
//! with its outcome.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::classify::Action;
use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use crate::out::Spool;
use crate::select::Selection;
use crate::survey::{Identity, Judged};
use crate::write::{
    self, Choosing, Chosen, Counted, Met, Notes, Pick, RunCommand, Settings, Sink, Target, WriteRun,
};

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
    // is recovered and sets the identities chosen aside (in a temporary file, in order); the
    // second meets them by merge as it judges the fleet and hands them to the batches. The
    // audit lists them, read back, before the first batch.
    let (root, as_of) = (run.root().to_path_buf(), run.as_of());
    let policy = Some(run.policy().clone());
    // A run sets its choice aside in the fleet's `.rekey/` (only root can change it: it decides
    // what root writes); a dry run, which may find none, in `TMPDIR`.
    let aside = run.aside();
    let targets =
        crate::survey::read_under(&root, as_of, policy, None, aside.as_deref(), |_, judged| {
            chosen(o, judged, aside.as_deref())
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
    };
    let mut recovering = Recovering {
        picking: targets.pick(),
        waiting: None,
    };
    // Audited once the CA key is loaded and the run has its id, before anything is written:
    // even a recovery cut short by a crash has its who, when and why on record, and the replay
    // that finishes it writes each outcome.
    let pick = |judged: &mut Judged<'_>| recovering.next(judged);
    let exit = write::run_streamed(run, counted, pick, |run| {
        write::audit_requested(
            &root,
            run.id(),
            started,
            &o.operator,
            &o.reason,
            targets.each(),
        )
    })
    .map(|(_, exit)| exit)?;
    // An identity chosen that could not be read back was not recovered (the audit says it was
    // not attempted): the run says so rather than end well.
    recovering
        .picking
        .end()
        .context("failed to recover every identity chosen")?;
    Ok(exit)
}

/// Why an identity needs recovering, in the words of its first credential's verdict (which tells
/// people elsewhere to run `rekey recover`; here they are running it).
fn reason_of(i: &Identity) -> String {
    i.credentials()
        .map(|c| c.verdict.without_advice().into_owned())
        .next()
        .unwrap_or_default()
}

/// The identities the first pass chose, as the second judges them. One that no longer needs
/// recovering, or is no longer in the fleet, is left alone and reported skipped with why (the
/// audit's `recovered` line says the same). A choice that cannot be read back stops the run
/// where it stands: the identities after it are not attempted, as the audit then says.
struct Recovering<'a> {
    picking: Pick<'a>,
    /// An identity of the second pass met again once the chosen ones before it, missing from
    /// it, are reported.
    waiting: Option<Identity>,
}

impl Recovering<'_> {
    fn next(&mut self, survey: &mut Judged<'_>) -> Option<(IdentityId, Result<Target, String>)> {
        while !self.picking.failed() {
            let Some(i) = self.waiting.take().or_else(|| survey.next()) else {
                return self.picking.next_missing().map(|id| (id, Err(gone())));
            };
            match self.picking.meet(&i.id) {
                Met::Chosen => {
                    let target = Target::judged(&i, Action::Recover, false);
                    return Some((i.id.clone(), target.ok_or_else(|| no_longer(&i))));
                }
                Met::NotChosen => {}
                Met::Missing(id) => {
                    self.waiting = Some(i);
                    return Some((id, Err(gone())));
                }
            }
        }
        None
    }
}

fn gone() -> String {
    "no longer in the fleet when the run reached it: the fleet changed since it was first read"
        .to_string()
}

/// Why an identity the first pass chose is left alone by the second: it no longer needs
/// recovering (its files changed between the two reads), in the words of what it is now.
fn no_longer(i: &Identity) -> String {
    let now = reason_of(i);
    let now = if now.is_empty() {
        String::new()
    } else {
        format!(" (now: {now})")
    };
    format!(
        "no longer in state recover when the run reached it{now}: the fleet changed since it \
         was first read; left alone"
    )
}

/// The selected identities in state recover that a recovery rotates, in the fleet's order, set
/// aside; each one chosen is shown on stderr once the selection is known good (its line set
/// aside until then), or it is said that none is. A selector that names nothing is a usage
/// error, as with a held fleet.
fn chosen(o: &Options, judged: &mut Judged<'_>, aside: Option<&Path>) -> Result<Chosen> {
    let mut checked = o.selection.checked();
    let verb = if o.write.sink == Sink::Disk {
        "recovering"
    } else {
        "would recover"
    };
    let mut shown = Spool::new()?;
    let mut any = false;
    let mut targets = Choosing::new(aside)?;
    for i in judged.by_ref() {
        if !checked.takes(i.node(), i.service()) || !needs_recover(&i) {
            continue;
        }
        if Target::judged(&i, Action::Recover, false).is_some() {
            targets.push(&i.id)?;
        }
        let reason = reason_of(&i);
        writeln!(
            shown.writer(),
            "{verb} {}: {}",
            i.id,
            crate::values::Escaped::new(&reason)
        )?;
        any = true;
    }
    let selected = checked.end()?;
    if !any {
        let none = match selected {
            1 => "the selected identity is not".to_string(),
            n => format!("none of the {n} selected identities is"),
        };
        eprintln!("rekey: {none} in state recover (see rekey status); nothing to do");
    }
    shown
        .copy_to(&mut std::io::stderr().lock())
        .context("failed to show the identities chosen")?;
    targets.done()
}
