//! The plan report (`plan --format html`): what a reviewer signs off before an upgrade. What
//! will rotate, be kept, need `recover` or be skipped, by node, by service and by reason, the
//! identities that need a person first, the new validity, and the policy in force with the
//! digests the plan file carries. Aggregated: tables are capped, the rest counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use super::{PeopleTable, card, close, escape, open, policy_section, warnings};
use crate::classify::{Action, stamp};
use crate::survey::{End, Identity, Judged, Scope};

/// Most rows a by-node, by-service or by-reason table shows; the rest are summed in one row.
const MAX_ROWS: usize = 200;

const ACTIONS: [Action; 4] = [Action::Rotate, Action::Keep, Action::Recover, Action::Skip];

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Keep => "keep",
        Action::Rotate => "rotate",
        Action::Recover => "recover",
        Action::Skip => "skip",
    }
}

fn action_colour(a: Action) -> &'static str {
    match a {
        Action::Rotate => "#f9a825",
        Action::Keep => "#2e7d32",
        Action::Recover => "#8e0000",
        Action::Skip => "#7b1fa2",
    }
}

fn slot(a: Action) -> usize {
    ACTIONS.iter().position(|x| *x == a).expect("ACTIONS lists every action")
}

/// Writes the plan report of the identities as they pass.
pub(crate) fn write(scope: &Scope, judged: &mut Judged<'_>, w: &mut impl Write) -> std::io::Result<()> {
    let mut tally = Tally::default();
    for identity in judged.by_ref() {
        tally.add(&identity);
    }
    let end = judged.end();
    let mut out = String::with_capacity(64 * 1024);
    open(&mut out, "Rotation plan", scope);
    warnings(&mut out, scope);
    summary_section(&mut out, scope, &tally, end);
    people_section(&mut out, end)?;
    table(&mut out, "By node", "by-node", "node", &tally.by_node);
    table(&mut out, "By service", "by-service", "service", &tally.by_service);
    reasons_section(&mut out, &tally.reasons);
    policy_section(&mut out, scope);
    close(&mut out);
    w.write_all(out.as_bytes())
}

/// What the page counts as the identities pass: per action overall, by node, by service and
/// by kind of reason (bounded by the fleet's names and reasons, not its identities).
#[derive(Default)]
struct Tally {
    credentials: [usize; 4],
    identities: [usize; 4],
    by_node: BTreeMap<String, [usize; 4]>,
    by_service: BTreeMap<String, [usize; 4]>,
    reasons: BTreeMap<(String, usize), usize>,
}

impl Tally {
    fn add(&mut self, i: &Identity) {
        self.identities[slot(i.action())] += 1;
        for c in i.credentials() {
            let action = c.verdict.state.action();
            self.credentials[slot(action)] += 1;
            *self
                .reasons
                .entry((reason_kind(&c.verdict.reason, action), slot(action)))
                .or_default() += 1;
        }
        let counts = |group: &mut BTreeMap<String, [usize; 4]>, key: &str| {
            if !group.contains_key(key) {
                group.insert(key.to_string(), [0; 4]);
            }
            let counts = group.get_mut(key).expect("inserted above");
            for c in i.credentials() {
                counts[slot(c.verdict.state.action())] += 1;
            }
        };
        counts(&mut self.by_node, i.node());
        counts(&mut self.by_service, i.service());
    }
}

fn summary_section(out: &mut String, scope: &Scope, tally: &Tally, end: &End) {
    let (credentials, identities) = (&tally.credentials, &tally.identities);
    out.push_str("<h2>Credentials by action</h2>\n<div class=\"cards\">");
    for a in ACTIONS {
        let id = format!("plan-{}", action_str(a));
        card(out, &id, credentials[slot(a)], action_str(a), Some(action_colour(a)));
    }
    out.push_str("</div>\n<h2>Identities by action</h2>\n<div class=\"cards\">");
    card(out, "identities", end.totals.identities_total(), "identities", None);
    for a in ACTIONS {
        let id = format!("identities-{}", action_str(a));
        card(out, &id, identities[slot(a)], action_str(a), Some(action_colour(a)));
    }
    let ctx = scope.context();
    let cap = if ctx.ca_caps_validity() {
        " — capped at the CA's expiry"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "</div>\n<p>Rotated credentials are valid until <b id=\"new-not-after\">{}</b>{cap} \
         ({}, keys {}). The plan file records <code>policy_sha256 {}</code> and \
         <code>ca_sha256 {}</code> with the CA rotation's <code>ca_stage {}</code>; \
         <code>rekey apply</code> refuses it if any has changed, \
         and rotates nothing the fleet itself does not judge due at its run date.</p>",
        stamp(ctx.new_not_after()),
        crate::count::count(scope.policy.validity_days, "day", "days"),
        match scope.policy.keys {
            crate::policy::KeyMode::Rotate => "rotated",
            crate::policy::KeyMode::Reuse => "reused",
        },
        scope.policy.digest(),
        scope.ca.sha256,
        scope.stage().name(),
    );
}

/// The identities that need a person or are skipped, with their reasons.
fn people_section(out: &mut String, end: &End) -> std::io::Result<()> {
    let table = PeopleTable {
        none: "Nothing needs <code>rekey recover</code> and nothing is skipped.",
        column: "action",
        label: |person| (action_str(person.action), action_colour(person.action)),
        problem_label: "skip",
        more: " (see the plan file).",
    };
    table.write(out, end)
}

/// A table of counts per action, one row per group; past [`MAX_ROWS`], the groups with the
/// least to do are summed into one row.
fn table(out: &mut String, title: &str, id: &str, what: &str, groups: &BTreeMap<String, [usize; 4]>) {
    let mut rows: Vec<(&String, &[usize; 4])> = groups.iter().collect();
    let mut rest = None;
    if rows.len() > MAX_ROWS {
        // Most to do first (recover, skip, rotate), then by name.
        rows.sort_by_key(|(name, c)| (std::cmp::Reverse((c[2] + c[3], c[0])), name.as_str()));
        let mut sum = [0usize; 4];
        let hidden = rows.len() - (MAX_ROWS - 1);
        for (_, c) in rows.drain(MAX_ROWS - 1..) {
            for (s, n) in sum.iter_mut().zip(c) {
                *s += n;
            }
        }
        rows.sort_by_key(|(name, _)| name.as_str());
        rest = Some((hidden, sum));
    }
    let _ = write!(
        out,
        "<h2>{title}</h2>\n<table id=\"{id}\"><tr><th>{what}</th>{}</tr>\n",
        ACTIONS
            .iter()
            .map(|a| format!("<th class=\"num\">{}</th>", action_str(*a)))
            .collect::<String>()
    );
    let cells = |c: &[usize; 4]| {
        c.iter()
            .map(|n| format!("<td class=\"num\">{n}</td>"))
            .collect::<String>()
    };
    for (name, c) in &rows {
        let _ = writeln!(out, "<tr class=\"group-row\"><td>{}</td>{}</tr>", escape(name), cells(c));
    }
    if let Some((hidden, sum)) = rest {
        let others = crate::count::count(hidden, "other", "others");
        let _ = writeln!(out, "<tr class=\"more\"><td>{others}</td>{}</tr>", cells(&sum));
    }
    out.push_str("</table>\n");
}

/// A reason with its particulars masked, so that alike reasons are counted together: dates and
/// numbers become `…`, and for `keep` and `rotate` only the kind before the first `:` is kept
/// (`renews itself: 39 of 90 days left` and `…: 44 of 90 days left` are one reason).
fn reason_kind(reason: &str, action: Action) -> String {
    let reason = match (action, reason.split_once(": ")) {
        (Action::Keep | Action::Rotate, Some((kind, _))) if !kind.contains(char::is_numeric) => kind,
        _ => reason,
    };
    let chars: Vec<char> = reason.chars().collect();
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    let mut previous = ' ';
    for (at, &c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(at + 1).is_some_and(char::is_ascii_digit);
        let starts = c.is_ascii_digit() && !previous.is_alphanumeric();
        let continues = c.is_ascii_digit()
            || (":-T.".contains(c) && next_is_digit)
            || (c == 'Z' && previous.is_ascii_digit());
        if starts || (in_number && continues) {
            if !in_number {
                out.push('…');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
        previous = c;
    }
    out
}

/// Credentials per kind of reason and action: why each thing happens, most common first.
fn reasons_section(out: &mut String, reasons: &BTreeMap<(String, usize), usize>) {
    let mut rows: Vec<((String, usize), usize)> = reasons.clone().into_iter().collect();
    rows.sort_by(|((ra, aa), na), ((rb, ab), nb)| (nb, aa, ra).cmp(&(na, ab, rb)));
    let _ = writeln!(
        out,
        "<h2>Why</h2>\n<table id=\"reasons\"><tr><th>action</th><th>reason</th>\
         <th class=\"num\">credentials</th></tr>"
    );
    for ((reason, action), n) in rows.iter().take(MAX_ROWS) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{n}</td></tr>",
            action_str(ACTIONS[*action]),
            escape(reason)
        );
    }
    if rows.len() > MAX_ROWS {
        let n: usize = rows[MAX_ROWS..].iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            out,
            "<tr class=\"more\"><td></td><td>{} other reasons</td><td class=\"num\">{n}</td></tr>",
            rows.len() - MAX_ROWS
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_reasons_are_counted_together() {
        let cases = [
            ("share", "renews itself: 39 of 90 days left", Action::Keep, "renews itself"),
            ("fresh", "fresh: issued 2026-11-29T08:12:00Z", Action::Keep, "fresh"),
            ("plain", "cannot self-rotate", Action::Rotate, "cannot self-rotate"),
            (
                "capped",
                "cannot self-rotate; new validity capped at CA expiry 2027-01-07T00:00:00Z",
                Action::Rotate,
                "cannot self-rotate; new validity capped at CA expiry …",
            ),
            (
                "recover keeps its words",
                "token expired 2026-11-26: run rekey recover",
                Action::Recover,
                "token expired …: run rekey recover",
            ),
            (
                "names with digits stay",
                "token.jwt sub does not name this identity (n4/kva)",
                Action::Skip,
                "token.jwt sub does not name this identity (n4/kva)",
            ),
        ];
        for (name, reason, action, want) in cases {
            assert_eq!(reason_kind(reason, action), want, "{name}");
        }
    }
}
