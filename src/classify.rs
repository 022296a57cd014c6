//! Classification (docs/design.md §3): what each credential needs, as a pure function of the inspected
//! identity, the policy, the CA's validity and the as-of instant. No I/O, no clock.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::ca::Role;
use crate::inspect::{Credential, Facts, Inspected, Window};
use crate::policy::{Policy, Renewal};

/// Which credential of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Cert,
    Token,
}

impl Kind {
    /// `cert` or `token`, as the status table and JSON name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Cert => "cert",
            Kind::Token => "token",
        }
    }
}

/// The planned action (the plan's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Rotate,
    Recover,
    Skip,
}

impl Action {
    /// The action as a plan writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Rotate => "rotate",
            Action::Recover => "recover",
            Action::Skip => "skip",
        }
    }
}

/// The state of a credential (the status table's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Renews itself and has enough lifetime left.
    Healthy,
    /// Issued less than `min_age_hours` ago.
    Fresh,
    /// Cannot renew itself: rotated at every upgrade.
    Due,
    /// Should renew itself but has not.
    Stalled,
    /// Certificate expired, but a valid token still proves the identity.
    Expired,
    /// The identity can no longer log in: only `rekey recover` acts.
    Recover,
    /// Unusable as found: skipped, with the problem stated.
    Problem,
    /// Not readable by the user who asks: nothing is judged of it, and it is not a problem.
    Unreadable,
}

impl State {
    /// Every state, in the order of the table of docs/design.md §3.
    pub(crate) const ALL: [State; 8] = [
        State::Healthy,
        State::Fresh,
        State::Due,
        State::Stalled,
        State::Expired,
        State::Recover,
        State::Problem,
        State::Unreadable,
    ];

    /// How much a state asks of a person, for an identity judged by its worst credential.
    pub(crate) fn urgency(self) -> u8 {
        match self {
            // What cannot be read asks nothing of the reader: an identity is judged on the rest.
            State::Unreadable => 0,
            State::Healthy => 1,
            State::Fresh => 2,
            State::Due => 3,
            State::Stalled => 4,
            State::Expired => 5,
            State::Recover => 6,
            State::Problem => 7,
        }
    }

    pub(crate) fn action(self) -> Action {
        match self {
            State::Healthy | State::Fresh => Action::Keep,
            State::Due | State::Stalled | State::Expired => Action::Rotate,
            State::Recover => Action::Recover,
            // A plan made by a user who cannot read a credential cannot ask to rotate it.
            State::Problem | State::Unreadable => Action::Skip,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Fresh => "fresh",
            State::Due => "due",
            State::Stalled => "stalled",
            State::Expired => "expired",
            State::Recover => "recover",
            State::Problem => "problem",
            State::Unreadable => "unreadable",
        }
    }
}

/// A credential's classification with its one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) state: State,
    pub(crate) reason: String,
    /// Whose reason it is: the credential's own, or its identity's other credential's problem
    /// (the reason then starts with [`SPREAD_PREFIX`]).
    pub(crate) whose: Whose,
    /// Where the reason tells people to run `rekey recover` ([`RUN_RECOVER`]), if it does: the
    /// byte at which that advice starts, so that `recover` itself can leave it out.
    advice: Option<usize>,
}

/// Whose reason a verdict gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whose {
    /// The credential's own.
    Own,
    /// The problem of the identity's other credential, spread to this one.
    Other,
}

impl Verdict {
    /// The credential's own verdict, with its reason.
    pub(crate) fn new(state: State, reason: impl Into<String>) -> Verdict {
        Verdict {
            state,
            reason: reason.into(),
            whose: Whose::Own,
            advice: None,
        }
    }

    /// A credential only `rekey recover` can act on: `cause`, then the advice to run it.
    fn recover(cause: String) -> Verdict {
        Verdict {
            advice: Some(cause.len()),
            ..Verdict::new(State::Recover, format!("{cause}{RUN_RECOVER}"))
        }
    }

    /// The reason without its advice to run `rekey recover` (what `recover` itself shows).
    pub(crate) fn without_advice(&self) -> std::borrow::Cow<'_, str> {
        match self.advice {
            Some(at) => {
                let (cause, rest) = self.reason.split_at(at);
                format!("{cause}{}", &rest[RUN_RECOVER.len()..]).into()
            }
            None => self.reason.as_str().into(),
        }
    }
}

/// How a reason ends when only `rekey recover` can act (left out of `recover`'s own output).
const RUN_RECOVER: &str = ": run rekey recover";

/// How the reason of a sound credential starts when its identity's other credential has a problem.
const SPREAD_PREFIX: &str = "identity has a problem: ";

/// Everything classification depends on besides the identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) ca_not_after: DateTime<Utc>,
    pub(crate) now: DateTime<Utc>,
}

impl Context<'_> {
    /// The `not_after` a credential rotated now gets: now + validity, capped at the CA's expiry.
    pub(crate) fn new_not_after(&self) -> DateTime<Utc> {
        (self.now + self.policy.validity()).min(self.ca_not_after)
    }

    /// Whether the CA expires before a full new validity period.
    pub(crate) fn ca_caps_validity(&self) -> bool {
        self.ca_not_after < self.now + self.policy.validity()
    }
}

/// The verdicts for an identity's certificate and token (each `None` when the file is absent).
/// A credential this user may not read is `unreadable`, and the other is judged on its own.
pub(crate) fn classify(identity: &Inspected, ctx: &Context<'_>) -> (Option<Verdict>, Option<Verdict>) {
    fn readable(c: &Option<Credential>) -> Option<&Credential> {
        c.as_ref().filter(|c| c.facts != Facts::NotReadable)
    }
    let (cert, token) = classify_readable(
        identity,
        readable(&identity.cert),
        readable(&identity.token),
        ctx,
    );
    let unreadable = |c: &Option<Credential>, file: &str, unchecked: &str| {
        let why = format!("{file} is not readable by you: {unchecked}");
        c.as_ref()
            .filter(|c| c.facts == Facts::NotReadable)
            .map(|_| Verdict::new(State::Unreadable, why))
    };
    let key_unchecked = identity.cert.as_ref().is_some_and(|c| c.key_not_readable);
    let cert = cert.map(|v| match key_unchecked {
        true => Verdict {
            reason: format!("{}{KEY_UNCHECKED}", v.reason),
            ..v
        },
        false => v,
    });
    (
        cert.or_else(|| unreadable(&identity.cert, "cert.pem", "not judged")),
        token.or_else(|| {
            unreadable(&identity.token, "token.jwt", "its expiry and signature are not checked")
        }),
    )
}

/// What a certificate's reason ends with when its key was not readable by this user.
const KEY_UNCHECKED: &str = " (key.pem is not readable by you: its match is not checked)";

/// [`classify`] of the credentials this user could read (`cert`, `token`: `None` when absent or
/// not readable); whether the identity has a token at all is the identity's, read or not.
fn classify_readable(
    identity: &Inspected,
    cert: Option<&Credential>,
    token: Option<&Credential>,
    ctx: &Context<'_>,
) -> (Option<Verdict>, Option<Verdict>) {
    let renewal = ctx.policy.renewal(identity.id.service());
    let has_token = identity.token.is_some();
    let problem = |c: Option<&Credential>, file: &str| {
        c.and_then(|c| match &c.facts {
            Facts::Unusable(e) => Some(e.to_string()),
            Facts::Usable(w) => not_yet_valid(w, file, ctx),
            Facts::NotReadable => None,
        })
    };
    let cert_problem = problem(cert, "cert.pem").or_else(|| {
        cert.and_then(|c| wrong_subject(c, identity.id.node(), identity.id.service(), ctx.policy))
    });
    let token_problem = problem(token, "token.jwt");
    if let Some(first) = cert_problem.clone().or(token_problem.clone()) {
        let verdict = |own: Option<String>| match own {
            Some(own) => Verdict::new(State::Problem, own),
            None => Verdict {
                whose: Whose::Other,
                ..Verdict::new(State::Problem, format!("{SPREAD_PREFIX}{first}"))
            },
        };
        return (
            cert.map(|_| verdict(cert_problem)),
            token.map(|_| verdict(token_problem)),
        );
    }
    let window = |c: &Credential| c.facts.window().expect("problems were handled above");
    let token_window = token.map(window);
    if let Some(w) = token_window.filter(|w| ctx.now >= w.not_after) {
        let cause = format!("token expired {}", day(w.not_after));
        let recover = || capped(Verdict::recover(cause.clone()), ctx);
        return (cert.map(|_| recover()), token.map(|_| recover()));
    }
    let previous = |c: &Credential| c.signed_by == Some(Role::Previous);
    let cert_verdict =
        cert.map(|c| one(Kind::Cert, &window(c), renewal, has_token, previous(c), ctx));
    let token_verdict =
        token.map(|c| one(Kind::Token, &window(c), renewal, true, previous(c), ctx));
    (
        cert_verdict.map(|v| capped(v, ctx)),
        token_verdict.map(|v| capped(v, ctx)),
    )
}

/// The problem of a certificate whose subject CN is not what the policy's `subject_cn` pattern
/// makes of its directory's names (docs/design.md §4); none when the policy sets no pattern.
fn wrong_subject(c: &Credential, node: &str, service: &str, policy: &Policy) -> Option<String> {
    let pattern = policy.subject_cn(service)?;
    let expected = pattern.expand(node, service);
    let cn = c.names.as_ref().map(|n| n.subject_cn.as_str()).filter(|cn| !cn.is_empty());
    match cn {
        Some(cn) if cn == expected => None,
        Some(cn) => Some(format!(
            "cert.pem subject CN {cn:?} does not match subject_cn {:?} (expected {expected:?})",
            pattern.as_str()
        )),
        None => Some(format!(
            "cert.pem has no subject CN; subject_cn {:?} expects {expected:?}",
            pattern.as_str()
        )),
    }
}

fn not_yet_valid(w: &Window, file: &str, ctx: &Context<'_>) -> Option<String> {
    (w.not_before - ctx.now > ctx.policy.min_age())
        .then(|| format!("{file} is not valid until {}", stamp(w.not_before)))
}

/// One valid, unexpired-token credential; `by_previous`: signed by the CA a CA rotation has
/// switched away from.
fn one(
    kind: Kind,
    w: &Window,
    renewal: Renewal,
    has_token: bool,
    by_previous: bool,
    ctx: &Context<'_>,
) -> Verdict {
    let self_renews = match kind {
        Kind::Cert => renewal.self_renews_cert,
        Kind::Token => renewal.self_rotates_token,
    };
    let expired_cert = kind == Kind::Cert && ctx.now > w.not_after;
    if by_previous && !expired_cert {
        // Whatever its age and whether it renews itself: `ca finish` waits for it.
        return Verdict::new(State::Due, "signed by the previous CA");
    }
    let age = ctx.now - w.not_before;
    if age < ctx.policy.min_age() {
        return Verdict::new(
            State::Fresh,
            format!("fresh: issued {}", stamp(w.not_before)),
        );
    }
    if expired_cert {
        let when = day(w.not_after);
        return if !has_token {
            Verdict::recover(format!("certificate expired {when} and there is no token"))
        } else if self_renews {
            Verdict::new(
                State::Stalled,
                format!("self-rotation stalled: certificate expired {when}"),
            )
        } else {
            Verdict::new(
                State::Expired,
                format!("certificate expired {when}; the token is still valid"),
            )
        };
    }
    if !self_renews {
        return Verdict::new(State::Due, "cannot self-rotate");
    }
    let lifetime = (w.not_after - w.not_before).num_seconds().max(1);
    let left = (w.not_after - ctx.now).num_seconds();
    let days = |secs: i64| secs.div_euclid(86_400);
    let share = format!(
        "{} of {} left",
        days(left),
        crate::count::count(days(lifetime), "day", "days")
    );
    if i128::from(left) * 100 < i128::from(ctx.policy.stalled_below_percent) * i128::from(lifetime)
    {
        Verdict::new(State::Stalled, format!("self-rotation stalled: {share}"))
    } else {
        Verdict::new(State::Healthy, format!("renews itself: {share}"))
    }
}

/// Says so when a rotation would be capped by the CA's expiry, or cannot happen at all.
fn capped(v: Verdict, ctx: &Context<'_>) -> Verdict {
    if !matches!(v.state.action(), Action::Rotate | Action::Recover) || !ctx.ca_caps_validity() {
        return v;
    }
    if ctx.ca_not_after <= ctx.now {
        let opening = format!(
            "CA expired {}: renew the CA before rotating (",
            day(ctx.ca_not_after)
        );
        return Verdict {
            advice: v.advice.map(|at| opening.len() + at),
            ..Verdict::new(State::Problem, format!("{opening}{})", v.reason))
        };
    }
    let reason = format!(
        "{}; new validity capped at CA expiry {}",
        v.reason,
        stamp(ctx.ca_not_after)
    );
    Verdict { reason, ..v }
}

/// An instant as an RFC 3339 timestamp, seconds precision (`2026-11-28T00:00:00Z`).
pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An instant as a date (`2026-11-28`).
pub(crate) fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A duration as people read it: `12d 3h`, `5h 10m`, `3d 2h ago` for the past.
pub(crate) fn human(d: TimeDelta) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let span = if days > 0 {
        format!("{days}d {hours}h")
    } else {
        format!("{hours}h {mins}m")
    };
    if d < TimeDelta::zero() {
        format!("{span} ago")
    } else {
        span
    }
}

#[cfg(test)]
mod tests;
