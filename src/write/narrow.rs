//! What a plan may rotate: a plan can only narrow what rekey would do, never widen it. A
//! credential is rotated only when the plan says `rotate` *and* the fleet, judged again at the
//! run date under its own policy, says `rotate` too, on the very bytes the plan was made from.
//! Pure: a plan's entries and the fleet's identities in (both in (node, service) order, met by
//! [`Merge`]), a target or a refusal per identity out.

use std::iter::Peekable;

use super::rotation::{Expected, Target};
use crate::classify::{Action, State};
use crate::names::IdentityId;
use crate::plan::{Planned, PlannedIdentity};
use crate::survey::{Assessed, Identity};

/// The plan's entries met with the fleet's identities, both in (node, service) order: each entry
/// with the fleet's identity of that name, if the fleet has one. Memory holds one of each.
pub(crate) struct Merge<P, F: Iterator> {
    pub(crate) plan: P,
    pub(crate) fleet: Peekable<F>,
}

impl<P, F> Iterator for Merge<P, F>
where
    P: Iterator<Item = (IdentityId, PlannedIdentity)>,
    F: Iterator<Item = Identity>,
{
    type Item = (IdentityId, PlannedIdentity, Option<Identity>);

    fn next(&mut self) -> Option<Self::Item> {
        let (id, planned) = self.plan.next()?;
        while self.fleet.next_if(|i| i.id < id).is_some() {}
        let identity = self.fleet.next_if(|i| i.id == id);
        Some((id, planned, identity))
    }
}

/// Narrows what the plan asks of `id` to what the fleet's `identity` (judged at the run date;
/// `None`: the fleet has no such identity) judges due; with `force`, also to what it would keep
/// (never what needs recover or has a problem). `None`: the plan asks nothing of it.
///
/// An identity the plan asks to rotate something of, or whose credential the fleet judges due
/// but the plan lists no line for, gets a target or a refusal, each with the reason for every
/// credential where the plan and the fleet differ: `token.jwt: the plan lists no line for it:
/// not rotated`, `cert.pem: the plan asks rotate; the fleet judges keep (fresh: …)`.
pub(crate) fn narrow(
    planned: &PlannedIdentity,
    identity: Option<&Identity>,
    force: bool,
) -> Option<Result<Target, String>> {
    let asks = planned
        .cert
        .iter()
        .chain(planned.token.iter())
        .any(|c| c.action == Action::Rotate);
    let Some(identity) = identity else {
        return asks.then(|| Err("no longer an identity of the fleet".to_string()));
    };
    let files = [
        (planned.cert, identity.cert.as_ref(), "cert.pem"),
        (planned.token, identity.token.as_ref(), "token.jwt"),
    ];
    let unlisted_due = files.iter().any(|(p, f, _)| {
        p.is_none() && f.is_some_and(|f| f.verdict.state.action() == Action::Rotate)
    });
    if !asks && !unlisted_due {
        return None;
    }
    // What changed since the plan comes first: the reviewer never saw it.
    if let Some(why) = files.iter().find_map(|(p, f, file)| changed(*p, *f, file)) {
        return Some(Err(why));
    }
    let mut notes = Vec::new();
    let mut target = Target {
        cert: None,
        token: None,
        dir: identity.dir,
        note: String::new(),
    };
    let slots = [&mut target.cert, &mut target.token];
    for (slot, (p, f, file)) in slots.into_iter().zip(files) {
        match credential(p, f, file, force) {
            Judged::Absent => {}
            Judged::Expected(e) => *slot = Some(e),
            Judged::Narrowed(e, why) => {
                *slot = e;
                notes.push(why);
            }
            Judged::Refused(why) => return Some(Err(why)),
        }
    }
    target.note = notes.join("; ");
    Some(if target.rotates() {
        Ok(target)
    } else {
        Err(target.note)
    })
}

/// One credential of a planned identity, judged again.
enum Judged {
    /// No such file, in the plan or the fleet, and none expected.
    Absent,
    /// The plan and the fleet agree (to rotate it, or to leave it).
    Expected(Expected),
    /// The plan and the fleet differ: it is left as it is (checked unchanged when the fleet
    /// could read it), with why.
    Narrowed(Option<Expected>, String),
    /// The identity must not be touched at all: it changed since the plan, needs a person, or
    /// has a problem.
    Refused(String),
}

/// Why a credential is not the one the plan judged, if it is not. A credential the plan lists
/// no line for is not "changed": the plan asks nothing of it (see [`credential`]).
fn changed(planned: Option<Planned>, fleet: Option<&Assessed>, file: &str) -> Option<String> {
    match (planned, fleet) {
        (None, _) => None,
        (Some(_), None) => Some(format!("{file} is gone since the plan")),
        (Some(p), Some(f)) => {
            (p.sha256 != f.sha256).then(|| format!("{file} changed since the plan"))
        }
    }
}

/// One credential, the same as planned (or not in the plan), judged again.
fn credential(
    planned: Option<Planned>,
    fleet: Option<&Assessed>,
    file: &str,
    force: bool,
) -> Judged {
    if let Some(why) = changed(planned, fleet, file) {
        return Judged::Refused(why);
    }
    let Some(fleet) = fleet else {
        return Judged::Absent;
    };
    let judged = fleet.verdict.state.action();
    let keep = fleet.sha256.map(|sha256| Expected {
        sha256,
        judged,
        rotate: false,
        not_after: fleet.window.map(|w| w.not_after),
    });
    let reason = fleet.verdict.without_advice();
    let Some(planned) = planned else {
        // Not in the plan: never rotated, and the identity is left whole when the fleet says it
        // needs a person (as when the plan asks to rotate such a credential).
        let note = format!("the plan lists no line for {file}: not rotated");
        return match judged {
            Action::Rotate => Judged::Narrowed(keep, note),
            Action::Recover => Judged::Refused(format!("needs rekey recover: {reason}")),
            Action::Skip => Judged::Refused(fleet.verdict.reason.clone()),
            Action::Keep => keep.map_or(Judged::Absent, Judged::Expected),
        };
    };
    let Some(keep) = keep else {
        // Unreadable, in the plan and now: a problem the plan cannot ask to rotate.
        return match planned.action {
            Action::Rotate => Judged::Refused(fleet.verdict.reason.clone()),
            _ => Judged::Absent,
        };
    };
    let differ = |not: &str| {
        format!(
            "{file}: the plan asks {}; the fleet judges {} ({reason}){not}",
            planned.action.as_str(),
            judged.as_str()
        )
    };
    if planned.action != Action::Rotate {
        return match judged {
            Action::Rotate => Judged::Narrowed(Some(keep), differ(": not rotated")),
            _ => Judged::Expected(keep),
        };
    }
    match fleet.verdict.state {
        State::Due | State::Stalled | State::Expired => Judged::Expected(Expected {
            rotate: true,
            ..keep
        }),
        State::Fresh | State::Healthy if force => Judged::Expected(Expected {
            rotate: true,
            ..keep
        }),
        State::Recover => Judged::Refused(format!("needs rekey recover: {reason}")),
        State::Problem | State::Unreadable => Judged::Refused(fleet.verdict.reason.clone()),
        State::Fresh | State::Healthy => Judged::Narrowed(Some(keep), differ("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Verdict;
    use crate::digest::Digest;

    fn assessed(state: State, reason: &str, bytes: &[u8]) -> Assessed {
        Assessed {
            kind: crate::classify::Kind::Cert,
            verdict: Verdict::new(state, reason),
            window: None,
            sha256: Some(Digest::of(bytes)),
            self_rotates: false,
            key_alg: None,
            names: None,
            signed_by: None,
            key_not_readable: false,
        }
    }

    fn planned(action: Action, bytes: &[u8]) -> Option<Planned> {
        Some(Planned {
            action,
            sha256: Some(Digest::of(bytes)),
        })
    }

    #[test]
    fn a_credential_rotates_only_when_plan_and_fleet_agree() {
        let rotate = |e: &Judged| matches!(e, Judged::Expected(Expected { rotate: true, .. }));
        let cases: Vec<(&str, Option<Planned>, Option<Assessed>, &str)> = vec![
            (
                "both say rotate",
                planned(Action::Rotate, b"a"),
                Some(assessed(State::Due, "cannot self-rotate", b"a")),
                "rotate",
            ),
            (
                "recover flipped to rotate",
                planned(Action::Rotate, b"a"),
                Some(assessed(
                    State::Recover,
                    "token expired 2026-10-02: run rekey recover",
                    b"a",
                )),
                "needs rekey recover: token expired 2026-10-02",
            ),
            (
                "fresh since the plan",
                planned(Action::Rotate, b"a"),
                Some(assessed(
                    State::Fresh,
                    "fresh: issued 2026-11-28T00:00:00Z",
                    b"a",
                )),
                "cert.pem: the plan asks rotate; the fleet judges keep (fresh: issued",
            ),
            (
                "healthy",
                planned(Action::Rotate, b"a"),
                Some(assessed(
                    State::Healthy,
                    "renews itself: 80 of 90 days left",
                    b"a",
                )),
                "cert.pem: the plan asks rotate; the fleet judges keep (renews itself",
            ),
            (
                "a problem now",
                planned(Action::Rotate, b"a"),
                Some(assessed(
                    State::Problem,
                    "cert.pem was not issued by this CA",
                    b"a",
                )),
                "cert.pem was not issued by this CA",
            ),
            (
                "changed since the plan",
                planned(Action::Rotate, b"a"),
                Some(assessed(State::Due, "cannot self-rotate", b"b")),
                "cert.pem changed since the plan",
            ),
            (
                "gone since the plan",
                planned(Action::Rotate, b"a"),
                None,
                "cert.pem is gone since the plan",
            ),
            (
                "no line in the plan",
                None,
                Some(assessed(State::Due, "cannot self-rotate", b"a")),
                "the plan lists no line for cert.pem: not rotated",
            ),
            (
                "no line in the plan for what needs recover",
                None,
                Some(assessed(
                    State::Recover,
                    "token expired 2026-10-02: run rekey recover",
                    b"a",
                )),
                "needs rekey recover: token expired 2026-10-02",
            ),
            (
                "no line in the plan for a problem",
                None,
                Some(assessed(
                    State::Problem,
                    "cert.pem was not issued by this CA",
                    b"a",
                )),
                "cert.pem was not issued by this CA",
            ),
            (
                "plan keeps what is due, said",
                planned(Action::Keep, b"a"),
                Some(assessed(State::Due, "cannot self-rotate", b"a")),
                "cert.pem: the plan asks keep; the fleet judges rotate (cannot self-rotate): not \
                 rotated",
            ),
        ];
        for (name, plan, fleet, want) in cases {
            let got = credential(plan, fleet.as_ref(), "cert.pem", false);
            let said = match &got {
                g if rotate(g) => "rotate".to_string(),
                Judged::Expected(_) => "keep".to_string(),
                Judged::Narrowed(_, why) | Judged::Refused(why) => why.clone(),
                Judged::Absent => "absent".to_string(),
            };
            assert!(said.starts_with(want), "{name}: {said}");
        }
    }
}
