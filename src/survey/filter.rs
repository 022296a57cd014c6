//! The filters of the read commands (`status` and `plan` with `--node`, `--service`,
//! `--state`): what part of a surveyed fleet they show. Values of one flag are alternatives;
//! flags combine. A name that matches nothing in the fleet is a usage error. Pure but for
//! listing the named nodes' service directories.

use std::collections::BTreeSet;

use super::identity::Identity;
use crate::classify::State;
use crate::exit::UsageError;
use crate::scan::{Issue, Node};

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

    /// What the filter keeps of one identity: nothing, the identity whole (`Grain::Identity`,
    /// when a credential is in a selected state) or only its credentials in a selected state.
    pub(crate) fn keep(&self, mut identity: Identity, grain: Grain) -> Option<Identity> {
        if !self.names(identity.node(), identity.service()) {
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
    pub(crate) fn keeps_issue(&self, issue: &Issue) -> bool {
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
    pub(crate) fn check_names(
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
    pub(crate) fn names(&self, node: &str, service: &str) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == node))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }
}

pub(crate) fn no_match(flag: &str, name: &str) -> UsageError {
    UsageError(format!(
        "{flag} {name} matches no identity in the fleet (see rekey status)"
    ))
}
