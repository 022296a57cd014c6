//! Selectors: `--node` and `--service` (repeatable), as `recover`, `rotate` and `apply` take them.
//! Values of one flag are alternatives; the two flags together must both match
//! (`--node n2 --service kms` is one identity). A selector that names nothing in the fleet is a
//! usage error naming it, never an empty run that looks like success.

use crate::exit::UsageError;
use crate::survey::{Identity, Survey};

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
