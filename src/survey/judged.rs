//! The identities of a fleet as a report takes them: one at a time, in (node, service) order,
//! narrowed by the read commands' filter and counted as they pass, so that what a report says
//! last (totals, what needs a person, issues) is known without holding the fleet.

use super::filter::{Filter, Grain};
use super::identity::{Identity, Stuck};
use super::scope::Scope;
use super::stream::{Flow, Listed};
use crate::classify::{Action, State};
use crate::names::IdentityId;
use crate::scan::Issue;
use super::totals::Totals;
use crate::aside::Aside;
use std::path::Path;

/// An identity that needs a person (`recover`, or a problem), as the reports list it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "PersonLine", try_from = "PersonLine")]
pub(crate) struct Person {
    pub(crate) id: IdentityId,
    /// Why: it needs `recover`, or has a problem.
    pub(crate) tag: Stuck,
    /// Its own reasons, each once.
    pub(crate) reasons: String,
    /// The identity's state and action (its most urgent, its most demanding credential's).
    pub(crate) state: State,
    pub(crate) action: Action,
}

/// A [`Person`] as it is set aside (a JSON line): its names checked again when read back.
#[derive(serde::Serialize, serde::Deserialize)]
struct PersonLine {
    node: String,
    service: String,
    tag: Stuck,
    reasons: String,
    state: State,
    action: Action,
}

impl From<Person> for PersonLine {
    fn from(p: Person) -> PersonLine {
        PersonLine {
            node: p.id.node().to_string(),
            service: p.id.service().to_string(),
            tag: p.tag,
            reasons: p.reasons,
            state: p.state,
            action: p.action,
        }
    }
}

impl TryFrom<PersonLine> for Person {
    type Error = String;

    fn try_from(p: PersonLine) -> Result<Person, String> {
        let id = IdentityId::new(&p.node, &p.service)
            .ok_or_else(|| format!("{}/{} is not an identity's name", p.node, p.service))?;
        Ok(Person {
            id,
            tag: p.tag,
            reasons: p.reasons,
            state: p.state,
            action: p.action,
        })
    }
}

/// The identities that need a person, in order: the first [`PEOPLE_HELD`] held, any more set
/// aside in a file with them (after a missed window, that is the fleet).
pub(crate) type People = Aside<Person>;

/// How many identities that need a person a survey holds before it sets them aside.
const PEOPLE_HELD: usize = 1024;

/// What is known once every identity has passed.
#[derive(Debug)]
pub(crate) struct End {
    /// Paths that are not identities (those inside the filter).
    pub(crate) issues: Vec<Issue>,
    /// Hidden entries ignored.
    pub(crate) hidden: usize,
    pub(crate) totals: Totals,
    /// Every identity shown that needs a person, in order.
    pub(crate) people: People,
}

/// Counts one identity passing, and lists it when it needs a person.
fn count(identity: &Identity, scope: &Scope, totals: &mut Totals, people: &mut People) {
    totals.add(identity, scope);
    if let Some((tag, reasons)) = identity.needs_person() {
        people.push(Person {
            id: identity.id.clone(),
            tag,
            reasons,
            state: identity.state(),
            action: identity.action(),
        });
    }
}

/// The judged identities of a fleet, one at a time; [`Judged::end`] after the last.
pub(crate) struct Judged<'a> {
    source: Source<'a>,
    filter: Option<(&'a Filter, Grain)>,
    scope: &'a Scope,
    totals: Totals,
    people: People,
    end: Option<End>,
}

enum Source<'a> {
    Flow(&'a mut Flow),
    Held {
        identities: std::vec::IntoIter<Identity>,
        listed: Option<Listed>,
    },
}

impl<'a> Judged<'a> {
    /// The identities of a live stream, narrowed by `filter`; those that need a person set
    /// aside in `aside` (else in `TMPDIR`) past the first few.
    pub(crate) fn live(
        scope: &'a Scope,
        flow: &'a mut Flow,
        filter: Option<(&'a Filter, Grain)>,
        aside: Option<&Path>,
    ) -> Self {
        Self::new(scope, Source::Flow(flow), filter, aside)
    }

    /// Identities already held (a writing command's survey), with what their listing found.
    pub(crate) fn held(scope: &'a Scope, identities: Vec<Identity>, issues: Vec<Issue>, hidden: usize) -> Self {
        let listed = Some(Listed { issues, hidden });
        let source = Source::Held {
            identities: identities.into_iter(),
            listed,
        };
        Self::new(scope, source, None, None)
    }

    fn new(
        scope: &'a Scope,
        source: Source<'a>,
        filter: Option<(&'a Filter, Grain)>,
        aside: Option<&Path>,
    ) -> Self {
        Judged {
            source,
            filter,
            scope,
            totals: Totals::default(),
            people: Aside::new(aside, PEOPLE_HELD),
            end: None,
        }
    }

    /// What is known after the last identity; takes (and counts) any not taken yet.
    pub(crate) fn end(&mut self) -> &End {
        if self.end.is_none() {
            for _ in self.by_ref() {}
            let listed = match &mut self.source {
                Source::Flow(flow) => flow.listed(),
                Source::Held { listed, .. } => listed.take().unwrap_or_default(),
            };
            let issues: Vec<Issue> = match self.filter {
                Some((filter, _)) => listed
                    .issues
                    .into_iter()
                    .filter(|i| filter.keeps_issue(i))
                    .collect(),
                None => listed.issues,
            };
            let mut totals = std::mem::take(&mut self.totals);
            totals.add_issues(&issues);
            self.people.flush();
            self.end = Some(End {
                issues,
                hidden: listed.hidden,
                totals,
                people: std::mem::replace(&mut self.people, Aside::held(Vec::new())),
            });
        }
        self.end.as_ref().expect("set above")
    }

}

impl Iterator for Judged<'_> {
    type Item = Identity;

    fn next(&mut self) -> Option<Identity> {
        if self.end.is_some() {
            return None;
        }
        loop {
            let identity = match &mut self.source {
                Source::Flow(flow) => flow.next()?,
                Source::Held { identities, .. } => identities.next()?,
            };
            let identity = match self.filter {
                Some((filter, grain)) => match filter.keep(identity, grain) {
                    Some(identity) => identity,
                    None => continue,
                },
                None => identity,
            };
            count(&identity, self.scope, &mut self.totals, &mut self.people);
            return Some(identity);
        }
    }
}
