//! Selectors. What part of a surveyed fleet a read command shows (`status` and `plan` with
//! `--node`, `--service`, `--state`: [`Filter`], defined with the survey that applies it) and
//! which rule turns what is shown into an exit code (`--warn-days` or `--expires-within`); which
//! identities a writing command acts on (`recover`, `rotate`, `apply` with `--node`,
//! `--service`: [`Selection`]). Values of one flag are alternatives; flags combine. A name that
//! matches nothing in the fleet is a usage error. Pure: identities in, fewer identities or a
//! verdict out.

use chrono::{DateTime, TimeDelta, Utc};

use crate::classify::{human, stamp};

use crate::exit::UsageError;
use crate::survey::totals::{Need, Totals};
use crate::survey::{Scope, no_match};

pub use crate::survey::{Filter, Grain};

/// How `status` turns the fleet into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitRule {
    /// Rotations due are work (3), and so are credentials kept but expiring within this.
    WarnWithin(TimeDelta),
    /// For monitors: only an expiry within this (or one already past), of a credential or of
    /// the CA, is work (3); rotations that are merely due are not.
    ExpiresWithin(TimeDelta),
}

impl ExitRule {
    /// What the (filtered) fleet, as counted, needs of the operator under this rule.
    pub(crate) fn need(self, totals: &Totals, scope: &Scope) -> Need {
        match self {
            ExitRule::WarnWithin(warn) => totals.need(scope, Some(warn)),
            // The monitor's question is answered first: an expiry within the window is 3
            // whatever else is wrong; a person is needed (4) only when nothing expires.
            ExitRule::ExpiresWithin(within) => {
                if Self::first_expiry_within(within, totals, scope).is_some() {
                    Need::WorkDue
                } else if totals.need(scope, None) == Need::RecoverOrProblem {
                    Need::RecoverOrProblem
                } else {
                    Need::None
                }
            }
        }
    }

    /// What expires within `within` of the run date (or already has), the CA first: its name
    /// and when. `None` when nothing does.
    fn first_expiry_within(
        within: TimeDelta,
        totals: &Totals,
        scope: &Scope,
    ) -> Option<(&'static str, DateTime<Utc>)> {
        let horizon = scope.as_of + within;
        let ca = (scope.ca.not_after <= horizon).then_some(("the CA", scope.ca.not_after));
        let credential = totals.earliest.filter(|t| *t <= horizon);
        ca.or(credential.map(|t| ("a credential", t)))
    }

    /// The closing line of the status table that answers the monitor's question, naming both
    /// what expires within the window and whether an identity needs a person; `None` under
    /// `--warn-days`.
    pub(crate) fn summary(self, totals: &Totals, scope: &Scope) -> Option<String> {
        let ExitRule::ExpiresWithin(within) = self else {
            return None;
        };
        let window = human(within);
        let expiring = match Self::first_expiry_within(within, totals, scope) {
            Some((what, at)) => format!("{what} ({}, the first)", stamp(at)),
            None => "nothing".to_string(),
        };
        let person = match totals.need(scope, None) {
            Need::RecoverOrProblem => "yes (named above)",
            Need::None | Need::WorkDue => "no",
        };
        Some(format!(
            "expires within {window}: {expiring}; needs a person: {person}; exit {}",
            crate::exit::Exit::from(self.need(totals, scope)) as i32
        ))
    }
}

/// Which identities the operator named. Selectors combine: `--node n2 --service kms` is one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    pub nodes: Vec<String>,
    pub services: Vec<String>,
    pub all: bool,
}

impl Selection {
    /// Whether the selection takes `node/service`; an empty selection (no flag) takes everything
    /// only when `all`.
    pub(crate) fn matches(&self, node: &str, service: &str) -> bool {
        let node_ok = self.nodes.is_empty() || self.nodes.iter().any(|n| n == node);
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == service);
        self.all || (!(self.nodes.is_empty() && self.services.is_empty()) && node_ok && service_ok)
    }

    /// The selection checked as a fleet streams past it ([`Checked`]).
    pub(crate) fn checked(&self) -> Checked<'_> {
        Checked {
            selection: self,
            nodes: vec![false; self.nodes.len()],
            services: vec![false; self.services.len()],
            taken: 0,
        }
    }

    /// The usage error of a selection whose names each exist but together match no identity.
    pub(crate) fn selects_nothing(&self) -> anyhow::Error {
        self.selects_nothing_usage().into()
    }

    fn selects_nothing_usage(&self) -> UsageError {
        UsageError(format!(
            "{} together match no identity in the fleet (see rekey status)",
            self.described()
        ))
    }

    fn described(&self) -> String {
        let nodes = self.nodes.iter().map(|n| format!("--node {n}"));
        let services = self.services.iter().map(|s| format!("--service {s}"));
        nodes.chain(services).collect::<Vec<_>>().join(" ")
    }
}

/// A selection checked against a fleet one identity at a time: which of its names some
/// identity bears, and how many identities it took, so that a fleet is checked as it streams
/// past, without being held.
pub(crate) struct Checked<'a> {
    selection: &'a Selection,
    nodes: Vec<bool>,
    services: Vec<bool>,
    taken: usize,
}

impl Checked<'_> {
    /// Whether the selection takes `node/service`, noting the names it bears.
    pub(crate) fn takes(&mut self, node: &str, service: &str) -> bool {
        let selection = self.selection;
        for (seen, name) in self.nodes.iter_mut().zip(&selection.nodes) {
            *seen |= name == node;
        }
        for (seen, name) in self.services.iter_mut().zip(&selection.services) {
            *seen |= name == service;
        }
        let takes = selection.matches(node, service);
        self.taken += usize::from(takes);
        takes
    }

    /// Once the whole fleet passed, how many identities the selection took. A `--node` or
    /// `--service` that no identity bears (a typo, or a name that is gone) is a usage error
    /// naming it, and so is a combination that took nothing.
    pub(crate) fn end(self) -> Result<usize, UsageError> {
        let selection = self.selection;
        for (flag, names, seen) in [
            ("--node", &selection.nodes, &self.nodes),
            ("--service", &selection.services, &self.services),
        ] {
            if let Some((name, _)) = names.iter().zip(seen).find(|(_, seen)| !**seen) {
                return Err(no_match(flag, name));
            }
        }
        if self.taken == 0 && !selection.all {
            return Err(selection.selects_nothing_usage());
        }
        Ok(self.taken)
    }
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
