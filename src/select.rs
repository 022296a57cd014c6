//! Selectors. What part of a surveyed fleet a read command shows (`status` and `plan` with
//! `--node`, `--service`, `--state`: [`Filter`]) and which rule turns what is shown into an exit
//! code (`--warn-days` or `--expires-within`); which identities a writing command acts on
//! (`recover`, `rotate`, `apply` with `--node`, `--service`: [`Selection`]). Values of one flag
//! are alternatives; flags combine. A name that matches nothing in the fleet is a usage error.
//! Pure: identities in, fewer identities or a verdict out.

use std::collections::BTreeSet;

use chrono::TimeDelta;

use crate::classify::State;
use crate::exit::UsageError;
use crate::scan::{Issue, Node};
use crate::survey::{Attention, Identity, Scope, Survey};
use crate::totals::Totals;

/// The filters of `status` and `plan`. Values of one flag are alternatives; flags combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub nodes: Vec<String>,
    pub services: Vec<String>,
    pub states: Vec<State>,
}

/// Whether a state filter keeps single credentials (`status`) or whole identities with a
/// credential in that state (`plan`: an identity is planned whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Credential,
    Identity,
}

impl Filter {
    pub fn is_everything(&self) -> bool {
        self.nodes.is_empty() && self.services.is_empty() && self.states.is_empty()
    }

    /// What the filter keeps of one identity: nothing, the identity whole (`Grain::Identity`,
    /// when a credential is in a selected state) or only its credentials in a selected state.
    pub fn keep(&self, mut identity: Identity, grain: Grain) -> Option<Identity> {
        if !self.names(&identity.node, &identity.service) {
            return None;
        }
        let wants = |state: State| self.states.is_empty() || self.states.contains(&state);
        match grain {
            Grain::Identity => {
                let wanted = identity.credentials().any(|c| wants(c.verdict.state));
                wanted.then_some(identity)
            }
            Grain::Credential => {
                identity.cert = identity.cert.take().filter(|c| wants(c.verdict.state));
                identity.token = identity.token.take().filter(|c| wants(c.verdict.state));
                (identity.cert.is_some() || identity.token.is_some()).then_some(identity)
            }
        }
    }

    /// Whether an issue (a path that is not an identity) is shown: when it lies under a
    /// selected node and service and, with `--state`, only a problem when `problem` is
    /// selected.
    pub fn keeps_issue(&self, issue: &Issue) -> bool {
        let wants = |state: State| self.states.is_empty() || self.states.contains(&state);
        let mut parts = issue.path.split('/').skip(1);
        let (node, service) = (parts.next(), parts.next());
        let node_ok =
            self.nodes.is_empty() || node.is_some_and(|n| self.nodes.iter().any(|x| x == n));
        let service_ok = self.services.is_empty()
            || service.is_some_and(|s| self.services.iter().any(|x| x == s));
        let state_ok = self.states.is_empty() || (issue.is_problem && wants(State::Problem));
        node_ok && service_ok && state_ok
    }

    /// A `--node` or `--service` that names nothing in the fleet is a usage error (a monitor
    /// watching a name that is gone should hear so), found before anything is shown: a node
    /// directory holding a service directory, a service directory on some node (the fleet's
    /// service names are listed when `--service` is given).
    pub fn check_names(
        &self,
        root: &std::path::Path,
        nodes: &[Node],
        services: Option<&BTreeSet<String>>,
    ) -> Result<(), UsageError> {
        // A node named must hold a service directory: its own listing, the named nodes only.
        let holds_one = |name: &String| {
            nodes
                .iter()
                .find(|node| &node.name == name)
                .is_some_and(|node| !crate::scan::services(root, node).candidates.is_empty())
        };
        if let Some(name) = self.nodes.iter().find(|n| !holds_one(n)) {
            return Err(no_match("--node", name));
        }
        if let Some(name) = self
            .services
            .iter()
            .find(|s| !services.is_some_and(|known| known.contains(*s)))
        {
            return Err(no_match("--service", name));
        }
        Ok(())
    }

    /// Whether the filter's `--node` and `--service` take `node`/`service`.
    pub fn names(&self, node: &str, service: &str) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == node))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }
}

fn no_match(flag: &str, name: &str) -> UsageError {
    UsageError(format!(
        "{flag} {name} matches no identity in the fleet (see rekey status)"
    ))
}

/// A `--node` or `--service` value that names nothing in `fleet` is a usage error naming it: a
/// typo, or a monitor watching a name that is gone, must hear so.
fn unknown_name(
    nodes: &[String],
    services: &[String],
    fleet: &[Identity],
) -> Result<(), UsageError> {
    for (flag, names, of) in [
        ("--node", nodes, node_of as fn(&Identity) -> &str),
        ("--service", services, service_of),
    ] {
        if let Some(name) = names
            .iter()
            .find(|n| !fleet.iter().any(|i| of(i) == n.as_str()))
        {
            return Err(no_match(flag, name));
        }
    }
    Ok(())
}

fn node_of(i: &Identity) -> &str {
    &i.node
}

fn service_of(i: &Identity) -> &str {
    &i.service
}

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
    /// What the (filtered) fleet, as counted, asks of the operator under this rule.
    pub fn attention(self, totals: &Totals, scope: &Scope) -> Attention {
        match self {
            ExitRule::WarnWithin(warn) => totals.attention(scope.as_of, Some(warn)),
            ExitRule::ExpiresWithin(within) => {
                let horizon = scope.as_of + within;
                match totals.attention(scope.as_of, None) {
                    Attention::RecoverOrProblem => Attention::RecoverOrProblem,
                    _ if scope.ca.not_after <= horizon
                        || totals.earliest.is_some_and(|t| t <= horizon) =>
                    {
                        Attention::WorkDue
                    }
                    _ => Attention::None,
                }
            }
        }
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
    pub fn matches(&self, node: &str, service: &str) -> bool {
        let node_ok = self.nodes.is_empty() || self.nodes.iter().any(|n| n == node);
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == service);
        self.all || (!(self.nodes.is_empty() && self.services.is_empty()) && node_ok && service_ok)
    }

    /// The identities selected, whatever their state. A `--node` or `--service` that names
    /// nothing in the fleet, or a combination that selects nothing, is a usage error.
    pub fn resolve<'a>(&self, fleet: &'a [Identity]) -> Result<Vec<&'a Identity>, UsageError> {
        unknown_name(&self.nodes, &self.services, fleet)?;
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

    /// Keeps only the selected identities of `survey`, and the problems found inside the
    /// selection. A selector that names nothing is a usage error.
    pub fn narrow(&self, survey: &mut Survey) -> Result<(), UsageError> {
        if self.all {
            return Ok(());
        }
        self.resolve(&survey.identities)?;
        survey
            .identities
            .retain(|i| self.matches(&i.node, &i.service));
        // Paths found that are not identities: kept where they lie inside the selection.
        survey.issues.retain(|issue| {
            let mut parts = issue.path.split('/').skip(1);
            match (parts.next(), parts.next()) {
                (Some(node), Some(service)) => self.matches(node, service),
                (Some(node), None) => self.nodes.iter().any(|n| n == node),
                _ => false,
            }
        });
        Ok(())
    }

    fn described(&self) -> String {
        let nodes = self.nodes.iter().map(|n| format!("--node {n}"));
        let services = self.services.iter().map(|s| format!("--service {s}"));
        nodes.chain(services).collect::<Vec<_>>().join(" ")
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
