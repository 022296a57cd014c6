//! The expiry report (`status --format html`): the CA's expiry, the identities that need a
//! person first (recover, problems) with their reasons, a timeline of the next 120 days with the
//! credentials expiring each day coloured by state, and a node × service grid coloured by the
//! least time left. Aggregated: its size does not grow with the fleet beyond the capped lists.

mod grid;

use std::fmt::Write as _;
use std::io::Write;

use super::{
    PeopleTable, card, close, escape, open, policy_section, state_colour, warnings,
};
use crate::classify::{State, human, stamp};
use crate::survey::{End, Identity, Judged, Scope};
use crate::survey::totals::{Totals, index, still_valid};

/// Days the timeline covers.
pub(crate) const TIMELINE_DAYS: usize = 120;

/// Writes the expiry report of the identities as they pass.
pub(crate) fn write(scope: &Scope, judged: &mut Judged<'_>, w: &mut impl Write) -> std::io::Result<()> {
    let mut timeline = Timeline::new(scope);
    let mut grid = grid::Grid::default();
    for identity in judged.by_ref() {
        timeline.add(&identity);
        grid.add(&identity, scope.as_of);
    }
    let end = judged.end();
    let mut out = String::with_capacity(64 * 1024);
    open(&mut out, "Credential expiry", scope);
    warnings(&mut out, scope);
    ca_section(&mut out, scope);
    counts_section(&mut out, scope, &end.totals);
    people_section(&mut out, end);
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
    card(out, "past-expiry", totals.past_expiry, "already expired", None);
    out.push_str("</div>\n");
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
fn people_section(out: &mut String, end: &End) {
    let table = PeopleTable {
        none: "No identity needs <code>rekey recover</code> and no problem was found.",
        column: "state",
        label: |person| (person.state.as_str(), state_colour(person.state)),
        problem_label: "problem",
        more: ": <code>rekey status --state recover --state problem</code> lists them all.",
    };
    table.write(out, end);
}

/// Credentials expiring on each of the next [`TIMELINE_DAYS`] days, by state.
struct Timeline {
    as_of: chrono::DateTime<chrono::Utc>,
    days: Vec<[usize; 7]>,
}

impl Timeline {
    fn new(scope: &Scope) -> Timeline {
        Timeline {
            as_of: scope.as_of,
            days: vec![[0usize; 7]; TIMELINE_DAYS],
        }
    }

    fn add(&mut self, identity: &Identity) {
        for c in identity.credentials() {
            let Some(w) = c.window else { continue };
            if !still_valid(c.kind, w.not_after, self.as_of) {
                continue;
            }
            let day = usize::try_from((w.not_after - self.as_of).num_seconds() / 86_400)
                .unwrap_or(usize::MAX);
            if let Some(counts) = self.days.get_mut(day) {
                counts[index(c.verdict.state)] += 1;
            }
        }
    }

    /// The timeline, stacked by state, as SVG.
    fn write(&self, out: &mut String) {
        let (days, as_of) = (&self.days, self.as_of);
    let total: usize = days.iter().flatten().sum();
    let peak = days.iter().map(|d| d.iter().sum::<usize>()).max().unwrap_or(0).max(1);
    let noun = crate::count::noun(total, "credential", "credentials");
    let _ = writeln!(
        out,
        "<h2>Expiring in the next {TIMELINE_DAYS} days: <span id=\"timeline-total\">{total}</span> {noun}</h2>"
    );
    let (bar, height, left, top) = (7usize, 140usize, 40usize, 10usize);
    let width = left + bar * TIMELINE_DAYS + 10;
    let _ = write!(
        out,
        "<svg id=\"timeline\" role=\"img\" aria-label=\"credentials expiring per day\" \
         width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">",
        height + top + 30,
        height + top + 30
    );
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#9aa5b1\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{peak}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        top + height,
        width - 10,
        top + height,
        left - 4,
        top + 9,
        left - 4,
        top + height,
    );
    for (day, counts) in days.iter().enumerate() {
        let x = left + day * bar;
        let mut y = top + height;
        for (state, n) in State::ALL.iter().zip(counts) {
            if *n == 0 {
                continue;
            }
            let h = (n * height).div_ceil(peak).max(1);
            y -= h;
            let date = stamp(as_of + chrono::TimeDelta::days(day as i64));
            let _ = write!(
                out,
                "<rect class=\"bar\" data-day=\"{day}\" data-state=\"{}\" data-n=\"{n}\" x=\"{x}\" \
                 y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{}\"><title>{} {}: {n}</title></rect>",
                state.as_str(),
                bar - 1,
                state_colour(*state),
                &date[..10],
                state.as_str(),
            );
        }
        if day % 15 == 0 {
            let date = stamp(as_of + chrono::TimeDelta::days(day as i64));
            let _ = write!(
                out,
                "<text x=\"{x}\" y=\"{}\">{}</text>",
                top + height + 16,
                &date[5..10]
            );
        }
    }
    out.push_str("</svg>\n<p class=\"legend\">");
    for state in State::ALL {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            state_colour(state),
            state.as_str()
        );
    }
    out.push_str("</p>\n");
}
}
