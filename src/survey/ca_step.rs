//! What a fleet's CA asks of its operator next (docs/design.md §3a, "When to rotate the CA"):
//! nothing, or the next stage of a CA rotation. Within `ca_rotate_before_days` of the active
//! CA's end a rotation is due (`rekey ca begin`); once begun, `rekey ca switch`; once switched,
//! `rekey rotate` while credentials are still signed by the previous CA, then `rekey ca finish`.
//! Pure: the scope and a count in, a step out. `status` and `plan` count it as work due (exit 3)
//! and name it in their `next:` lines; the capped-validity warning names the same command.

use chrono::{DateTime, Utc};

use super::scope::Scope;
use crate::ca::Stage;
use crate::classify::{human, stamp};
use crate::count::count;

/// The next step of the CA's life the operator must take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaStep {
    /// Steady, and the active CA ends within `ca_rotate_before_days` (or has ended).
    Begin { ends: DateTime<Utc> },
    /// Begun: switch once the hooks of `begin` have run and the trust has settled.
    Switch,
    /// Switched, with this many credentials still signed by the previous CA, `stuck` of them
    /// of identities left for a person (which `rotate` skips).
    Rotate { on_previous: usize, stuck: usize },
    /// Switched, and no credential is signed by the previous CA any more.
    Finish,
}

impl CaStep {
    /// The step the fleet in `scope` asks for, `on_previous` being how many of the credentials
    /// judged are still signed by the previous CA (`stuck` of them of identities left for a
    /// person). A steady fleet is due for a rotation from the instant `ca_rotate_before_days`
    /// before its CA's end, that instant included.
    pub(crate) fn of(scope: &Scope, on_previous: usize, stuck: usize) -> Option<CaStep> {
        match scope.stage() {
            Stage::Steady => {
                let ends = scope.ca.not_after;
                (scope.as_of >= ends - scope.policy.ca_rotate_before()).then_some(CaStep::Begin { ends })
            }
            Stage::Begun => Some(CaStep::Switch),
            Stage::Switched if on_previous > 0 => Some(CaStep::Rotate { on_previous, stuck }),
            Stage::Switched => Some(CaStep::Finish),
        }
    }

    /// The command that takes the step.
    pub(crate) fn command(self) -> &'static str {
        match self {
            CaStep::Begin { .. } => "rekey ca begin",
            CaStep::Switch => "rekey ca switch",
            CaStep::Rotate { .. } => "rekey rotate",
            CaStep::Finish => "rekey ca finish",
        }
    }

    /// The `next:` line of `status` and `plan`: the command first, then why.
    pub(crate) fn next_line(self, scope: &Scope) -> String {
        let why = match self {
            CaStep::Begin { ends } => {
                let left = ends - scope.as_of;
                let when = if left <= chrono::TimeDelta::zero() {
                    "has ended".to_string()
                } else {
                    format!("{} left", human(left))
                };
                format!(
                    "a CA rotation is due: the CA ends {} ({when}), within ca_rotate_before_days \
                     ({}) of its end",
                    stamp(ends),
                    count(scope.policy.ca_rotate_before_days, "day", "days")
                )
            }
            CaStep::Switch => format!(
                "CA rotation begun: switch once every hook of ca begin has run and \
                 ca_trust_settle_hours ({}) have passed since it",
                scope.policy.ca_trust_settle_hours
            ),
            CaStep::Rotate { on_previous, stuck: 0 } => format!(
                "CA rotation switched: {} still signed by the previous CA, reissued under the \
                 new one; then rekey ca finish",
                count(on_previous, "credential", "credentials")
            ),
            CaStep::Rotate { on_previous, stuck } => format!(
                "CA rotation switched: {} still signed by the previous CA; {stuck} of them \
                 belong to identities that need recover or have a problem, which rotate skips: \
                 recover or fix those (named above) first; then rekey ca finish",
                count(on_previous, "credential is", "credentials are")
            ),
            CaStep::Finish => "CA rotation switched, and no credential is signed by the previous \
                               CA any more"
                .to_string(),
        };
        format!(
            "next: {} --root {} ({why})",
            self.command(),
            scope.root.display()
        )
    }
}
