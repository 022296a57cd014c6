//! The expiry report (`status --format html`): the CA's expiry (during a CA rotation both CAs,
//! the stage and which CA signed each credential), the identities that need a
//! person first (recover, problems) with their reasons, a timeline of the next 120 days with the
//! credentials expiring each day coloured by state, and a node × service grid coloured by the
//! least time left. Aggregated: its size does not grow with the fleet beyond the capped lists.

mod grid;
mod left;
mod signers;
mod timeline;

use timeline::Timeline;

use std::fmt::Write as _;
use std::io::Write;

use super::{
    PeopleTable, card, close, escape, open, policy_section, state_colour, warnings,
};
use crate::classify::{State, human, stamp};
use crate::survey::{End, Judged, Scope};
use crate::survey::totals::Totals;


/// What the page calls a credential whose expiry has passed, in any state (the time-left
/// scale's first bucket).
const SCALE_PAST: &str = left::SCALE[0].0;

/// Writes the expiry report of the identities as they pass.
pub(crate) fn write(scope: &Scope, judged: &mut Judged<'_>, w: &mut impl Write) -> std::io::Result<()> {
    let mut timeline = Timeline::new(scope.as_of);
    let mut grid = grid::Grid::default();
    let mut signers = signers::Signers::default();
    for identity in judged.by_ref() {
        timeline.add(&identity);
        signers.add(&identity);
        grid.add(&identity, scope.as_of);
    }
    let end = judged.end();
    let mut out = String::with_capacity(64 * 1024);
    open(&mut out, "Credential expiry", scope);
    warnings(&mut out, scope);
    ca_section(&mut out, scope);
    signers.write(&mut out, scope, &end.totals);
    counts_section(&mut out, scope, &end.totals);
    people_section(&mut out, end)?;
    timeline.write(&mut out);
    grid.write(&mut out);
    policy_section(&mut out, scope);
    close(&mut out);
    w.write_all(out.as_bytes())
}

fn days_left(scope: &Scope, t: chrono::DateTime<chrono::Utc>) -> i64 {
    (t - scope.as_of).num_days()
}

fn ca_section(out: &mut String, scope: &Scope) {
    let ca = &scope.ca;
    let left = ca.not_after - scope.as_of;
    let class = if scope.context().ca_caps_validity() { "alert" } else { "ok" };
    let note = if ca.not_after <= scope.as_of {
        " It has EXPIRED: nothing can be rotated until it is renewed."
    } else if scope.context().ca_caps_validity() {
        " It expires within one validity period: new credentials are capped at its expiry."
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<h2>Issuing CA</h2>\n<div class=\"{class}\"><b>{}</b> ({}) expires <b>{}</b>, \
         <span id=\"ca-days-left\">{}</span> days from now ({}).{note} Key {}.</div>",
        escape(&ca.common_name),
        ca.public.alg,
        stamp(ca.not_after),
        days_left(scope, ca.not_after),
        escape(&human(left)),
        escape(&ca.key.describe()),
    );
}

fn counts_section(out: &mut String, scope: &Scope, totals: &Totals) {
    out.push_str("<h2>Credentials by state</h2>\n<div class=\"cards\">");
    card(out, "identities", totals.identities_total(), "identities", None);
    card(out, "credentials", totals.credentials.iter().sum(), "credentials", None);
    for state in State::ALL {
        let id = format!("count-{}", state.as_str());
        let n = totals.credentials_in(state);
        card(out, &id, n, state.as_str(), Some(state_colour(state)));
    }
    card(out, "past-expiry", totals.past_expiry, SCALE_PAST, None);
    out.push_str("</div>\n");
    out.push_str(
        "<p class=\"meta\">A state (its colour) is what a credential needs. The state \
         <i>expired</i> is a certificate past its expiry date whose token still proves the \
         identity; credentials in other states (stalled, recover, problem) can be past their \
         expiry date too, and \"past expiry date\" counts them all.</p>\n",
    );
    if let Some(n) = &totals.nearest {
        let _ = writeln!(
            out,
            "<p>Next to expire: <b>{}/{}</b> {} on {} ({} left).</p>",
            escape(n.id.node()),
            escape(n.id.service()),
            match n.kind {
                crate::classify::Kind::Cert => "certificate",
                crate::classify::Kind::Token => "token",
            },
            stamp(n.not_after),
            escape(&human(n.not_after - scope.as_of)),
        );
    }
}

/// The identities that need a person, listed first, with their reasons.
fn people_section(out: &mut String, end: &End) -> std::io::Result<()> {
    let table = PeopleTable {
        none: "No identity needs <code>rekey recover</code> and no problem was found.",
        column: "state",
        label: |person| (person.state.as_str(), state_colour(person.state)),
        problem_label: "problem",
        more: ": <code>rekey status --state recover --state problem</code> lists them all.",
    };
    table.write(out, end)
}

