//! What a survey adds up to: credentials and identities per state, the nearest expiry, and what
//! to run next. The status table's closing summary, the JSON `totals`, the metrics and the HTML
//! reports all count from here, in one pass. Pure: a survey in, numbers and sentences out.

use chrono::{DateTime, Utc};

use crate::count::count;
use crate::classify::{Kind, State, human, stamp};
use crate::survey::{Identity, Survey};

/// The counts and the nearest expiry of a survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Credentials per state, indexed like [`State::ALL`].
    pub credentials: [usize; 7],
    /// Identities per state (an identity is as urgent as its worst credential).
    pub identities: [usize; 7],
    /// Issues that are problems (paths that are not identities).
    pub problems: usize,
    /// Issues that are notes.
    pub notes: usize,
    /// The credential that expires next (not yet expired at the survey's instant).
    pub nearest: Option<Nearest>,
    /// Credentials already past their expiry.
    pub past_expiry: usize,
}

/// The credential that expires next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nearest {
    pub node: String,
    pub service: String,
    pub kind: Kind,
    pub not_after: DateTime<Utc>,
}

/// Whether a credential expiring at `not_after` is still valid at `at`: a certificate is valid
/// at its `not_after` instant, a token is expired at its `exp` (docs/design.md §3).
pub fn still_valid(kind: Kind, not_after: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    match kind {
        Kind::Cert => at <= not_after,
        Kind::Token => at < not_after,
    }
}

/// The position of a state in [`State::ALL`].
pub fn index(state: State) -> usize {
    State::ALL
        .iter()
        .position(|s| *s == state)
        .expect("State::ALL lists every state")
}

impl Totals {
    pub fn of(survey: &Survey) -> Totals {
        let mut totals = Totals {
            credentials: [0; 7],
            identities: [0; 7],
            problems: survey.issues.iter().filter(|i| i.is_problem).count(),
            notes: survey.issues.iter().filter(|i| !i.is_problem).count(),
            nearest: None,
            past_expiry: 0,
        };
        let mut nearest: Option<(&Identity, Kind, DateTime<Utc>)> = None;
        for identity in &survey.identities {
            totals.identities[index(identity.state())] += 1;
            for c in identity.credentials() {
                totals.credentials[index(c.verdict.state)] += 1;
                let Some(w) = c.window else { continue };
                if !still_valid(c.kind, w.not_after, survey.as_of) {
                    totals.past_expiry += 1;
                } else if nearest.is_none_or(|(_, _, t)| w.not_after < t) {
                    nearest = Some((identity, c.kind, w.not_after));
                }
            }
        }
        totals.nearest = nearest.map(|(i, kind, not_after)| Nearest {
            node: i.node.clone(),
            service: i.service.clone(),
            kind,
            not_after,
        });
        totals
    }

    pub fn credentials_in(&self, state: State) -> usize {
        self.credentials[index(state)]
    }

    pub fn identities_in(&self, state: State) -> usize {
        self.identities[index(state)]
    }

    /// Credentials to rotate (`due`, `stalled`, `expired`).
    pub fn to_rotate(&self) -> usize {
        [State::Due, State::Stalled, State::Expired]
            .map(|s| self.credentials_in(s))
            .iter()
            .sum()
    }

    /// The closing lines of the status table: counts, the nearest expiry, what to run next.
    pub fn summary(&self, survey: &Survey) -> Vec<String> {
        let total: usize = self.credentials.iter().sum();
        let counts: Vec<String> = State::ALL
            .iter()
            .filter(|s| self.credentials_in(**s) > 0)
            .map(|s| format!("{} {}", self.credentials_in(*s), s.as_str()))
            .collect();
        let mut lines = vec![format!(
            "{} identities, {total} credentials: {}",
            survey.identities.len(),
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            }
        )];
        if self.past_expiry > 0 {
            let n = count(self.past_expiry, "credential", "credentials");
            lines.push(format!("already expired: {n}"));
        }
        if let Some(n) = &self.nearest {
            let when = format!("{} left", human(n.not_after - survey.as_of));
            let kind = match n.kind {
                Kind::Cert => "certificate",
                Kind::Token => "token",
            };
            lines.push(format!(
                "nearest expiry: {}/{} {kind}, {} ({when})",
                n.node,
                n.service,
                stamp(n.not_after)
            ));
        }
        lines.extend(self.next_steps(survey));
        lines
    }

    /// What to run next, most urgent first.
    pub fn next_steps(&self, survey: &Survey) -> Vec<String> {
        let root = survey.root.display();
        let mut next = Vec::new();
        let problems = self.identities_in(State::Problem) + self.problems;
        if problems > 0 {
            let n = count(problems, "problem", "problems");
            next.push(format!(
                "next: fix the {n} named above; rekey skips them until then"
            ));
        }
        let recover = self.identities_in(State::Recover);
        if recover > 0 {
            let n = count(recover, "identity", "identities");
            next.push(format!(
                "next: {n} can no longer log in: rekey recover --root {root} --all --reason TEXT \
                 (or --node/--service), after checking they are still in use"
            ));
        }
        let rotate = self.to_rotate();
        if rotate > 0 {
            let n = count(rotate, "credential", "credentials");
            next.push(format!(
                "next: {n} to rotate: rekey plan --root {root} -o plan.toml, review, rekey apply \
                 plan.toml (or rekey rotate --root {root})"
            ));
        }
        if next.is_empty() {
            next.push("next: nothing to do".to_string());
        }
        next
    }
}
