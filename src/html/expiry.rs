//! The expiry report (`status --format html`): the CA's expiry, the identities that need a
//! person first (recover, problems) with their reasons, a timeline of the next 120 days with the
//! credentials expiring each day coloured by state, and a node × service grid coloured by the
//! least time left. Aggregated: its size does not grow with the fleet beyond the capped lists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use super::{
    Attention, AttentionRow, card, close, escape, open, policy_section, state_colour, warnings,
};
use crate::classify::{State, human, stamp};
use crate::survey::{Identity, Survey};
use crate::totals::{Totals, index, still_valid};

/// Days the timeline covers.
pub const TIMELINE_DAYS: usize = 120;
/// Most rows and columns the grid shows; the least urgent rest are merged into one.
const GRID_ROWS: usize = 60;
const GRID_COLUMNS: usize = 40;

/// Writes the expiry report of `survey`.
pub fn write(survey: &Survey, w: &mut impl Write) -> std::io::Result<()> {
    let totals = Totals::of(survey);
    let mut out = String::with_capacity(64 * 1024);
    open(&mut out, "Credential expiry", survey);
    warnings(&mut out, survey);
    ca_section(&mut out, survey);
    counts_section(&mut out, survey, &totals);
    attention_section(&mut out, survey);
    timeline_section(&mut out, survey);
    grid_section(&mut out, survey);
    policy_section(&mut out, survey);
    close(&mut out);
    w.write_all(out.as_bytes())
}

fn days_left(survey: &Survey, t: chrono::DateTime<chrono::Utc>) -> i64 {
    (t - survey.as_of).num_days()
}

fn ca_section(out: &mut String, survey: &Survey) {
    let ca = &survey.ca;
    let left = ca.not_after - survey.as_of;
    let class = if survey.context().ca_caps_validity() { "alert" } else { "ok" };
    let note = if ca.not_after <= survey.as_of {
        " It has EXPIRED: nothing can be rotated until it is renewed."
    } else if survey.context().ca_caps_validity() {
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
        days_left(survey, ca.not_after),
        escape(&human(left)),
        escape(&ca.key.describe()),
    );
}

fn counts_section(out: &mut String, survey: &Survey, totals: &Totals) {
    out.push_str("<h2>Credentials by state</h2>\n<div class=\"cards\">");
    card(out, "identities", survey.identities.len(), "identities", None);
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
            escape(&n.node),
            escape(&n.service),
            match n.kind {
                crate::classify::Kind::Cert => "certificate",
                crate::classify::Kind::Token => "token",
            },
            stamp(n.not_after),
            escape(&human(n.not_after - survey.as_of)),
        );
    }
}

/// The identities that need a person, listed first, with their reasons.
fn attention_section(out: &mut String, survey: &Survey) {
    let rows: Vec<AttentionRow<'_>> = survey
        .identities
        .iter()
        .filter_map(|identity| {
            let (_, reasons) = identity.needs_person()?;
            let state = identity.state();
            Some(AttentionRow {
                identity,
                label: state.as_str(),
                colour: state_colour(state),
                reasons,
            })
        })
        .collect();
    let problems: Vec<_> = survey.issues.iter().filter(|i| i.is_problem).collect();
    let attention = Attention {
        none: "No identity needs <code>rekey recover</code> and no problem was found.",
        column: "state",
        problem_label: "problem",
        more: ": <code>rekey status --state recover --state problem</code> lists them all.",
    };
    attention.write(out, &rows, &problems);
}

/// Credentials expiring on each of the next [`TIMELINE_DAYS`] days, stacked by state, as SVG.
fn timeline_section(out: &mut String, survey: &Survey) {
    let mut days = vec![[0usize; 7]; TIMELINE_DAYS];
    for c in survey.identities.iter().flat_map(Identity::credentials) {
        let Some(w) = c.window else { continue };
        if !still_valid(c.kind, w.not_after, survey.as_of) {
            continue;
        }
        let day = usize::try_from((w.not_after - survey.as_of).num_seconds() / 86_400).unwrap_or(usize::MAX);
        if let Some(counts) = days.get_mut(day) {
            counts[index(c.verdict.state)] += 1;
        }
    }
    let total: usize = days.iter().flatten().sum();
    let peak = days.iter().map(|d| d.iter().sum::<usize>()).max().unwrap_or(0).max(1);
    let _ = writeln!(
        out,
        "<h2>Expiring in the next {TIMELINE_DAYS} days: <span id=\"timeline-total\">{total}</span> credentials</h2>"
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
            let date = stamp(survey.as_of + chrono::TimeDelta::days(day as i64));
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
            let date = stamp(survey.as_of + chrono::TimeDelta::days(day as i64));
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

/// The least time left in a group of credentials, and whether any is unusable.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    min_left: Option<i64>,
    problem: bool,
    credentials: usize,
}

impl Cell {
    fn merge(&mut self, other: Cell) {
        self.min_left = match (self.min_left, other.min_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.problem |= other.problem;
        self.credentials += other.credentials;
    }

    /// Smaller is more urgent.
    fn urgency(&self) -> i64 {
        if self.problem { i64::MIN } else { self.min_left.unwrap_or(i64::MAX) }
    }

    fn colour(&self) -> &'static str {
        const DAY: i64 = 86_400;
        match (self.problem, self.min_left) {
            (true, _) => "#7b1fa2",
            (false, None) => "#eceff1",
            (false, Some(s)) if s <= 0 => "#8e0000",
            (false, Some(s)) if s < 7 * DAY => "#e53935",
            (false, Some(s)) if s < 30 * DAY => "#ef6c00",
            (false, Some(s)) if s < 60 * DAY => "#f9a825",
            _ => "#2e7d32",
        }
    }
}

/// Keeps the `max` most urgent names; the rest become one group, named last.
fn pick(urgency: &BTreeMap<&str, i64>, max: usize) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut names: Vec<(&str, i64)> = urgency.iter().map(|(n, u)| (*n, *u)).collect();
    let kept: Vec<&str> = if names.len() <= max {
        names.iter().map(|(n, _)| *n).collect()
    } else {
        names.sort_by_key(|(n, u)| (*u, *n));
        let mut kept: Vec<&str> = names[..max - 1].iter().map(|(n, _)| *n).collect();
        kept.sort_unstable();
        kept
    };
    let mut labels: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
    let rest = urgency.len() - kept.len();
    if rest > 0 {
        labels.push(format!("{rest} others"));
    }
    let mut slot = BTreeMap::new();
    for (n, _) in &names {
        let at = kept.binary_search(n).unwrap_or(labels.len() - 1);
        slot.insert(n.to_string(), at);
    }
    (labels, slot)
}

fn grid_section(out: &mut String, survey: &Survey) {
    let mut cells: BTreeMap<(&str, &str), Cell> = BTreeMap::new();
    for i in &survey.identities {
        let cell = cells.entry((i.node.as_str(), i.service.as_str())).or_default();
        for c in i.credentials() {
            let one = Cell {
                min_left: c.window.map(|w| (w.not_after - survey.as_of).num_seconds()),
                problem: c.verdict.state == State::Problem,
                credentials: 1,
            };
            cell.merge(one);
        }
    }
    let mut node_urgency: BTreeMap<&str, i64> = BTreeMap::new();
    let mut service_urgency: BTreeMap<&str, i64> = BTreeMap::new();
    for ((node, service), cell) in &cells {
        let u = cell.urgency();
        node_urgency.entry(node).and_modify(|x| *x = (*x).min(u)).or_insert(u);
        service_urgency.entry(service).and_modify(|x| *x = (*x).min(u)).or_insert(u);
    }
    let (rows, row_of) = pick(&node_urgency, GRID_ROWS);
    let (columns, column_of) = pick(&service_urgency, GRID_COLUMNS);
    let mut grid = vec![vec![None::<Cell>; columns.len()]; rows.len()];
    for ((node, service), cell) in &cells {
        let slot = &mut grid[row_of[*node]][column_of[*service]];
        slot.get_or_insert_with(Cell::default).merge(*cell);
    }
    let _ = writeln!(
        out,
        "<h2>Least time left by node and service</h2>\n<p class=\"meta\">\
         <span id=\"grid-nodes\">{}</span> nodes × <span id=\"grid-services\">{}</span> services\
         {}. Hover a cell for its numbers.</p>",
        node_urgency.len(),
        service_urgency.len(),
        if rows.len() < node_urgency.len() || columns.len() < service_urgency.len() {
            "; the most urgent are shown, the rest merged into \"others\""
        } else {
            ""
        }
    );
    out.push_str("<table class=\"grid\"><tr><th></th>");
    for c in &columns {
        let _ = write!(out, "<th class=\"col\">{}</th>", escape(c));
    }
    out.push_str("</tr>\n");
    for (r, row) in rows.iter().enumerate() {
        let _ = write!(out, "<tr><th>{}</th>", escape(row));
        for (c, column) in columns.iter().enumerate() {
            match &grid[r][c] {
                None => out.push_str("<td></td>"),
                Some(cell) => {
                    let left = match (cell.problem, cell.min_left) {
                        (true, _) => "a problem".to_string(),
                        (false, Some(s)) => human(chrono::TimeDelta::seconds(s)),
                        (false, None) => "-".to_string(),
                    };
                    let _ = write!(
                        out,
                        "<td style=\"background:{}\" title=\"{} / {}: {} credentials, least left {}\"></td>",
                        cell.colour(),
                        escape(row),
                        escape(column),
                        cell.credentials,
                        escape(&left),
                    );
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<p class=\"legend\">");
    for (colour, label) in [
        ("#8e0000", "expired"),
        ("#e53935", "under 7 days"),
        ("#ef6c00", "under 30 days"),
        ("#f9a825", "under 60 days"),
        ("#2e7d32", "60 days or more"),
        ("#7b1fa2", "a problem"),
    ] {
        let _ = write!(out, "<span><span class=\"swatch\" style=\"background:{colour}\"></span>{label}</span>");
    }
    out.push_str("</p>\n");
}
