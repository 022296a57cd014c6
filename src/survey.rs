//! The read side end to end: CA, policy, scan, inspect and classify every identity of a root.
//! The read commands stream the judged identities in (node, service) order through bounded
//! windows ([`stream`]); writing commands collect them into a [`Survey`].
//!
//! Inside, each file uses only those listed before it: [`identity`] and [`scope`] (values),
//! [`filter`], then [`ca_step`], then [`totals`], then [`stream`] and [`judged`], then this file.

mod ca_step;
mod filter;
mod identity;
mod judged;
mod scope;
mod stream;
pub(crate) mod totals;

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::scan::Issue;
use stream::Window;

pub use filter::{Filter, Grain};
pub(crate) use filter::no_match;
pub(crate) use ca_step::CaStep;
pub(crate) use identity::{Assessed, Identity, Stuck};
pub(crate) use judged::{End, Judged, Person};
pub(crate) use scope::{Opened, Scope, open_root};

/// The whole fleet as of one instant, held in memory: what a writing command acts on. The read
/// commands never hold it; they stream the same identities ([`stream`]).
#[derive(Debug)]
pub(crate) struct Survey {
    pub(crate) scope: Scope,
    pub(crate) identities: Vec<Identity>,
    pub(crate) issues: Vec<Issue>,
    /// Hidden entries (names starting with a dot) under `nodes/` and its nodes, ignored.
    pub(crate) hidden: usize,
}

impl Survey {
    /// Surveys the fleet at `root` as of `as_of`, every identity held in memory.
    pub(crate) fn take(root: &Path, as_of: DateTime<Utc>) -> Result<Survey> {
        Survey::take_under(root, as_of, None)
    }

    /// [`Survey::take`] under the policy a writing run read (`None`: read it now).
    pub(crate) fn take_under(
        root: &Path,
        as_of: DateTime<Utc>,
        policy: Option<crate::policy::Loaded>,
    ) -> Result<Survey> {
        let Opened { scope, nodes, .. } = Scope::open(root, as_of, false, policy)?;
        let (identities, listed) = stream::each(&scope, nodes, &|_, _| true, Window::Reading, |flow| {
            let identities: Vec<Identity> = flow.by_ref().collect();
            (identities, flow.listed())
        });
        Ok(Survey {
            scope,
            identities,
            issues: listed.issues,
            hidden: listed.hidden,
        })
    }

    /// The held identities as a report takes them (a writing command's plan, `demo`'s table).
    pub(crate) fn judged(&self) -> Judged<'_> {
        Judged::held(
            &self.scope,
            self.identities.clone(),
            self.issues.clone(),
            self.hidden,
        )
    }
}

/// Streams the fleet at `root` as of `as_of` to `consume`, narrowed by `filter`: the read
/// commands' survey, whose memory does not grow with the fleet. A `--node` or `--service` that
/// names nothing in the fleet is refused before `consume` is called.
pub(crate) fn read<R>(
    root: &Path,
    as_of: DateTime<Utc>,
    filter: Option<(&Filter, Grain)>,
    consume: impl FnOnce(&Scope, &mut Judged<'_>) -> R,
) -> Result<R> {
    streamed(root, as_of, None, filter, Window::Reading, None, consume)
}

/// How many service directories under `root` the names of `filter` select, by listing the
/// nodes and their services only (no file is read): what a run that judges as it goes shows its
/// progress against. 0 when the fleet cannot be listed (its survey then says why).
pub(crate) fn listed(root: &Path, filter: Option<&Filter>) -> usize {
    let Ok(nodes) = crate::scan::nodes(root) else {
        return 0;
    };
    let node_named = |name: &str| filter.is_none_or(|f| f.nodes.is_empty() || f.nodes.iter().any(|n| n == name));
    nodes
        .nodes
        .iter()
        .filter(|node| node_named(&node.name))
        .map(|node| {
            let services = crate::scan::services(root, node).candidates;
            let named = |c: &&crate::scan::Candidate| {
                filter.is_none_or(|f| f.names(&node.name, c.id.service()))
            };
            services.iter().filter(named).count()
        })
        .sum()
}

/// [`read`] for a writing run, under the policy it read (`None`: read it now), with the
/// writers' narrower read-ahead (a journal batch at a time takes what it judged), the
/// identities that need a person set aside in `aside` (the run's [`crate::write::WriteRun`]
/// says where).
pub(crate) fn read_under<R>(
    root: &Path,
    as_of: DateTime<Utc>,
    policy: Option<crate::policy::Loaded>,
    filter: Option<(&Filter, Grain)>,
    aside: Option<&Path>,
    consume: impl FnOnce(&Scope, &mut Judged<'_>) -> R,
) -> Result<R> {
    streamed(root, as_of, policy, filter, Window::Writing, aside, consume)
}

fn streamed<R>(
    root: &Path,
    as_of: DateTime<Utc>,
    policy: Option<crate::policy::Loaded>,
    filter: Option<(&Filter, Grain)>,
    window: Window,
    aside: Option<&Path>,
    consume: impl FnOnce(&Scope, &mut Judged<'_>) -> R,
) -> Result<R> {
    let services = filter.is_some_and(|(f, _)| !f.services.is_empty());
    let Opened {
        scope,
        nodes,
        service_names,
    } = Scope::open(root, as_of, services, policy)?;
    if let Some((filter, _)) = filter {
        filter.check_names(&scope.root, &nodes.nodes, service_names.as_ref())?;
    }
    let wanted = |node: &str, service: &str| filter.is_none_or(|(f, _)| f.names(node, service));
    Ok(stream::each(&scope, nodes, &wanted, window, |flow| {
        let mut judged = Judged::live(&scope, flow, filter, aside);
        consume(&scope, &mut judged)
    }))
}

