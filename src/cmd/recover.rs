//! `rekey recover`: rotate identities whose token expired (state `recover`), only those a person
//! selected, with a reason. Every selector must name something in the fleet; the CA key is
//! loaded before anything is audited; each `requested` line in `.rekey/audit.jsonl` is paired
//! with its outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::classify::{Action, RUN_RECOVER};
use crate::exit::{Exit, UsageError};
use crate::names::IdentityId;
use crate::survey::{Identity, Survey};
use crate::write::{self, Command, Notes, Settings, Target, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub selection: Selection,
    pub reason: String,
    pub operator: String,
    /// Do it; without this, only show what would be done.
    pub yes: bool,
    pub write: Settings,
}

/// Which identities the operator named. Selectors combine: `--node n2 --service kms` is one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    pub nodes: Vec<String>,
    pub services: Vec<String>,
    pub all: bool,
}

impl Selection {
    pub fn matches(&self, node: &str, service: &str) -> bool {
        let node_ok = self.nodes.is_empty() || self.nodes.iter().any(|n| n == node);
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == service);
        self.all || (!(self.nodes.is_empty() && self.services.is_empty()) && node_ok && service_ok)
    }

    /// The identities selected, whatever their state. A `--node` or `--service` that names
    /// nothing in the fleet, or a combination that selects nothing, is a usage error.
    pub fn resolve<'a>(&self, fleet: &'a [Identity]) -> Result<Vec<&'a Identity>, UsageError> {
        for (flag, names, of) in [
            (
                "--node",
                &self.nodes,
                (|i: &Identity| i.node.as_str()) as fn(&Identity) -> &str,
            ),
            ("--service", &self.services, |i: &Identity| {
                i.service.as_str()
            }),
        ] {
            if let Some(name) = names
                .iter()
                .find(|n| !fleet.iter().any(|i| of(i) == n.as_str()))
            {
                return Err(UsageError(format!(
                    "{flag} {name} matches no identity in the fleet (see rekey status)"
                )));
            }
        }
        let chosen: Vec<&Identity> = fleet
            .iter()
            .filter(|i| self.matches(&i.node, &i.service))
            .collect();
        if chosen.is_empty() && !self.all {
            return Err(UsageError(format!(
                "{} together match no identity in the fleet (see rekey status)",
                self.described()
            )));
        }
        Ok(chosen)
    }

    fn described(&self) -> String {
        let nodes = self.nodes.iter().map(|n| format!("--node {n}"));
        let services = self.services.iter().map(|s| format!("--service {s}"));
        nodes.chain(services).collect::<Vec<_>>().join(" ")
    }
}

fn needs_recover(i: &Identity) -> bool {
    i.credentials()
        .any(|c| c.verdict.state.action() == Action::Recover)
}

/// The operator's name: `--operator`, else the login name.
pub fn operator_name(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

pub fn recover(o: &Options) -> Result<Exit> {
    if o.reason.trim().is_empty() {
        return Err(
            UsageError("--reason must say why these identities are recovered".into()).into(),
        );
    }
    if !o.yes {
        let survey = Survey::take(&o.root, o.as_of)?;
        let chosen = chosen(o, &survey)?;
        if !chosen.is_empty() {
            let n = chosen.len();
            let these = if n == 1 {
                "this identity".to_string()
            } else {
                format!("these {n} identities")
            };
            eprintln!("rekey: nothing was written; add --yes to recover {these}");
        }
        return Ok(Exit::Ok);
    }
    let run = WriteRun::begin(&o.root, o.as_of, o.write)?;
    let survey = Survey::take(run.root(), run.as_of())?;
    let targets: BTreeMap<IdentityId, Target> = chosen(o, &survey)?
        .into_iter()
        .filter_map(|i| {
            let target = Target::judged(i, Action::Recover)?;
            Some((IdentityId::new(&i.node, &i.service)?, target))
        })
        .collect();
    if targets.is_empty() {
        return Ok(Exit::Ok);
    }
    let root = run.root().to_path_buf();
    let started = o.write.started;
    let notes = Notes {
        rolls_back: None,
        reason: Some(o.reason.clone()),
        operator: Some(o.operator.clone()),
    };
    // Audited once the CA key is loaded and the run has its id, before anything is written:
    // even a recovery cut short by a crash has its who, when and why on record, and the replay
    // that finishes it writes each outcome.
    write::rotation::run(
        run,
        &survey,
        Command::Recover,
        targets.clone(),
        Vec::new(),
        notes,
        |run| {
            write::audit_requested(
                &root,
                run.id(),
                started,
                &o.operator,
                &o.reason,
                targets.keys(),
            )
        },
    )
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
        // The reason tells people elsewhere to run `rekey recover`; here they are running it.
        let reason = i
            .credentials()
            .map(|c| c.verdict.reason.replace(RUN_RECOVER, ""))
            .next()
            .unwrap_or_default();
        let verb = if o.yes { "recovering" } else { "would recover" };
        eprintln!("{verb} {}/{}: {reason}", i.node, i.service);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::Selection;

    #[test]
    fn selectors_combine() {
        let sel = |nodes: &[&str], services: &[&str], all| Selection {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
            all,
        };
        let cases = [
            ("node only", sel(&["n2"], &[], false), [true, true, false]),
            (
                "service only",
                sel(&[], &["kms"], false),
                [true, false, true],
            ),
            (
                "node and service: one identity",
                sel(&["n2"], &["kms"], false),
                [true, false, false],
            ),
            ("all", sel(&[], &[], true), [true, true, true]),
            ("nothing", sel(&[], &[], false), [false, false, false]),
        ];
        for (name, s, want) in cases {
            let got = [
                s.matches("n2", "kms"),
                s.matches("n2", "csi"),
                s.matches("n3", "kms"),
            ];
            assert_eq!(got, want, "{name}");
        }
    }
}
