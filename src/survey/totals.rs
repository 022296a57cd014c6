//! What a survey adds up to: credentials and identities per state, the nearest expiry, what it
//! needs of the operator ([`Need`], and the exit code that says it), and what to run next.
//! Counted identity by identity as a stream passes ([`Totals::add`]): the status table's closing
//! summary, the JSON `totals`, the metrics, the HTML reports and the exit codes all count from
//! here. Pure: identities in, numbers and sentences out.

use chrono::{DateTime, Utc};

use crate::classify::Action;
use crate::classify::{Kind, State, human, stamp};
use crate::count::count;
use crate::exit::Exit;
use crate::names::IdentityId;
use crate::scan::Issue;
use super::ca_step::CaStep;
use super::identity::Identity;
use super::scope::Scope;

/// What a fleet, as counted, needs of its operator, least first; the exit code of `status`,
/// `plan` and `rotate` (4, 3, 0) says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Need {
    None,
    WorkDue,
    RecoverOrProblem,
}

impl From<Need> for Exit {
    fn from(need: Need) -> Exit {
        match need {
            Need::None => Exit::Ok,
            Need::WorkDue => Exit::WorkDue,
            Need::RecoverOrProblem => Exit::Attention,
        }
    }
}

/// The counts and the nearest expiry of a survey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Credentials per state, indexed like [`State::ALL`].
    pub(crate) credentials: [usize; State::ALL.len()],
    /// Identities per state (an identity is as urgent as its worst credential).
    pub(crate) identities: [usize; State::ALL.len()],
    /// Fleet issues: issues that are problems, paths under `nodes/` that are not identities
    /// (links, bad names, unreadable entries). Identities with a problem are `problems`
    /// ([`Totals::problems`]); the two never mix.
    pub(crate) fleet_issues: usize,
    /// Issues that are notes.
    pub(crate) notes: usize,
    /// The credential that expires next (not yet expired at the survey's instant).
    pub(crate) nearest: Option<Nearest>,
    /// Credential files present but not readable by this user (never problems).
    pub(crate) unreadable_files: usize,
    /// Credentials already past their expiry.
    pub(crate) past_expiry: usize,
    /// The earliest expiry of any credential, and of any credential kept (what `--warn-days`
    /// and `--expires-within` judge).
    pub(crate) earliest: Option<DateTime<Utc>>,
    pub(crate) earliest_kept: Option<DateTime<Utc>>,
    /// Credentials judged usable that are signed by the previous CA of a switched CA rotation
    /// (what keeps `rekey ca finish` waiting).
    pub(crate) on_previous: usize,
    /// Of those, the credentials of identities left for a person (recover, problem): `rotate`
    /// skips them, so only the person moves them to the new CA.
    pub(crate) on_previous_stuck: usize,
}

/// The credential that expires next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nearest {
    pub(crate) id: IdentityId,
    pub(crate) kind: Kind,
    pub(crate) not_after: DateTime<Utc>,
}

/// Whether a credential expiring at `not_after` is still valid at `at`: a certificate is valid
/// at its `not_after` instant, a token is expired at its `exp` (docs/design.md §3).
pub(crate) fn still_valid(kind: Kind, not_after: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    match kind {
        Kind::Cert => at <= not_after,
        Kind::Token => at < not_after,
    }
}

/// The position of a state in [`State::ALL`].
pub(crate) fn index(state: State) -> usize {
    State::ALL
        .iter()
        .position(|s| *s == state)
        .expect("State::ALL lists every state")
}

impl Totals {
    /// Counts one identity.
    pub(crate) fn add(&mut self, identity: &Identity, scope: &Scope) {
        self.identities[index(identity.state())] += 1;
        let stuck = matches!(identity.state(), State::Recover | State::Problem);
        for c in identity.credentials() {
            self.credentials[index(c.verdict.state)] += 1;
            self.unreadable_files += c.unreadable_files();
            let previous = c.signed_by == Some(crate::ca::Role::Previous);
            self.on_previous += usize::from(previous);
            self.on_previous_stuck += usize::from(previous && stuck);
            let Some(w) = c.window else { continue };
            let earliest = |t: Option<DateTime<Utc>>| Some(t.map_or(w.not_after, |t| t.min(w.not_after)));
            self.earliest = earliest(self.earliest);
            if c.verdict.state.action() == Action::Keep {
                self.earliest_kept = earliest(self.earliest_kept);
            }
            if !still_valid(c.kind, w.not_after, scope.as_of) {
                self.past_expiry += 1;
            } else if self.nearest.as_ref().is_none_or(|n| w.not_after < n.not_after) {
                self.nearest = Some(Nearest {
                    id: identity.id.clone(),
                    kind: c.kind,
                    not_after: w.not_after,
                });
            }
        }
    }

    /// Counts the paths that are not identities.
    pub(crate) fn add_issues(&mut self, issues: &[Issue]) {
        self.fleet_issues += issues.iter().filter(|i| i.is_problem).count();
        self.notes += issues.iter().filter(|i| !i.is_problem).count();
    }

    /// Problems: identities with a problem (state `problem`), the one meaning of the word in
    /// every output.
    pub(crate) fn problems(&self) -> usize {
        self.identities_in(State::Problem)
    }

    /// Identities counted.
    pub(crate) fn identities_total(&self) -> usize {
        self.identities.iter().sum()
    }

    /// Credentials counted.
    pub(crate) fn credentials_total(&self) -> usize {
        self.credentials.iter().sum()
    }

    /// The next step of a CA rotation the counted fleet asks for (docs/design.md §3a).
    pub(crate) fn ca_step(&self, scope: &Scope) -> Option<CaStep> {
        CaStep::of(scope, self.on_previous, self.on_previous_stuck)
    }

    /// What was counted needs of the operator; `warn` also counts credentials that keep but
    /// expire within it as work due (`status --warn-days`). A CA rotation due or under way
    /// ([`Totals::ca_step`]) is work due.
    pub(crate) fn need(&self, scope: &Scope, warn: Option<chrono::TimeDelta>) -> Need {
        let as_of = scope.as_of;
        let any = |states: &[State]| states.iter().any(|s| self.credentials_in(*s) > 0);
        if self.fleet_issues > 0 || any(&[State::Recover, State::Problem]) {
            return Need::RecoverOrProblem;
        }
        let expiring = match (warn, self.earliest_kept) {
            (Some(warn), Some(t)) => t <= as_of + warn,
            _ => false,
        };
        if self.to_rotate() > 0 || expiring || self.ca_step(scope).is_some() {
            Need::WorkDue
        } else {
            Need::None
        }
    }

    pub(crate) fn credentials_in(&self, state: State) -> usize {
        self.credentials[index(state)]
    }

    pub(crate) fn identities_in(&self, state: State) -> usize {
        self.identities[index(state)]
    }

    /// Credentials to rotate (`due`, `stalled`, `expired`).
    pub(crate) fn to_rotate(&self) -> usize {
        [State::Due, State::Stalled, State::Expired]
            .map(|s| self.credentials_in(s))
            .iter()
            .sum()
    }

    /// The closing lines of the status table: counts, the nearest expiry, what to run next.
    pub(crate) fn summary(&self, scope: &Scope) -> Vec<String> {
        let total = self.credentials_total();
        let counts: Vec<String> = State::ALL
            .iter()
            .filter(|s| self.credentials_in(**s) > 0)
            .map(|s| match s {
                // "4 problem" would read as a count of problems, which are identities.
                State::Problem => format!("{} with a problem", self.credentials_in(*s)),
                _ => format!("{} {}", self.credentials_in(*s), s.as_str()),
            })
            .collect();
        let mut lines = vec![format!(
            "{}, {}: {}",
            count(self.identities_total(), "identity", "identities"),
            count(total, "credential", "credentials"),
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            }
        )];
        if self.unreadable_files > 0 {
            let mut line = format!(
                "not readable by you: {}, not problems: what needs them is not checked (run as \
                 their owner to check it)",
                count(self.unreadable_files, "file", "files")
            );
            let blind = self.identities_in(State::Unreadable);
            if blind > 0 {
                line.push_str(&format!(
                    "; nothing is readable of {}",
                    count(blind, "identity", "identities")
                ));
            }
            lines.push(line);
        }
        if self.past_expiry > 0 {
            let n = count(self.past_expiry, "credential", "credentials");
            lines.push(format!("already expired: {n}"));
        }
        if let Some(n) = &self.nearest {
            let when = format!("{} left", human(n.not_after - scope.as_of));
            let kind = match n.kind {
                Kind::Cert => "certificate",
                Kind::Token => "token",
            };
            lines.push(format!(
                "nearest expiry: {} {kind}, {} ({when})",
                n.id,
                stamp(n.not_after)
            ));
        }
        lines.extend(self.next_steps(scope));
        lines
    }

    /// The problems a status table names, counted as it shows them: identities with a problem
    /// (their rows) and fleet issues (its `problem:` lines); `None` when there are neither.
    pub(crate) fn problems_named(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.problems(), "identity with a problem", "identities with a problem"),
            (self.fleet_issues, "fleet issue", "fleet issues"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| count(n, one, many))
        .collect();
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// What to run next, most urgent first.
    pub(crate) fn next_steps(&self, scope: &Scope) -> Vec<String> {
        let root = scope.root.display();
        let mut next = Vec::new();
        if let Some(named) = self.problems_named() {
            next.push(format!(
                "next: fix the problems named above ({named}); rekey skips them until then"
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
        if let Some(step) = self.ca_step(scope) {
            next.push(step.next_line(scope));
        }
        if next.is_empty() {
            next.push("next: nothing to do".to_string());
        }
        next
    }
}
