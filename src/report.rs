//! Renders a survey for people: the `status` table and the short plan summary that goes to
//! stderr; `report::json` renders it for pipelines. Pure: values in, text out.

mod json;

use std::io::Write;

pub use json::write_status_json;

use crate::classify::{Action, day, human, stamp};
use crate::count::count;
use crate::survey::{Assessed, Identity, Survey};
use crate::totals::Totals;

/// Every credential of a survey with its identity, in (node, service, kind) order.
pub fn rows(survey: &Survey) -> impl Iterator<Item = (&Identity, &Assessed)> {
    survey
        .identities
        .iter()
        .flat_map(|i| i.credentials().map(move |c| (i, c)))
}

pub fn kind_str(c: &Assessed) -> &'static str {
    match c.kind {
        crate::classify::Kind::Cert => "cert",
        crate::classify::Kind::Token => "token",
    }
}

/// The CA line shown first by `status`.
pub fn ca_line(survey: &Survey) -> String {
    let ca = &survey.ca;
    let ctx = survey.context();
    let left = ca.not_after - survey.as_of;
    let left = if left < chrono::TimeDelta::zero() {
        format!("expired {}", human(left))
    } else {
        format!("{} left", human(left))
    };
    let mut line = format!(
        "CA {:?} ({}), expires {} ({left}), key {}",
        ca.common_name,
        ca.public.alg,
        stamp(ca.not_after),
        ca.key.describe(),
    );
    if ca.not_after <= survey.as_of {
        line.push_str(" — EXPIRED: nothing can be rotated until the CA is renewed");
    } else if ctx.ca_caps_validity() {
        line.push_str(&format!(
            " — expires within {}: new validity is capped at its expiry",
            count(survey.policy.validity_days, "day", "days")
        ));
    }
    line
}

/// The line naming the policy in force, shown by `status` and `plan`.
pub fn policy_line(survey: &Survey) -> String {
    format!(
        "policy {}, policy_sha256 {}",
        survey.policy_source.describe(),
        survey.policy.digest()
    )
}

/// The `status` table: CA first, then one aligned row per credential, then reported issues.
pub fn status_table(survey: &Survey) -> String {
    let mut out = Vec::new();
    write_status_table(survey, false, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// The ANSI colour of a state on a terminal.
fn colour_of(state: &str) -> Option<&'static str> {
    match state {
        "healthy" | "fresh" => Some("32"),
        "due" => Some("33"),
        "stalled" | "expired" => Some("1;33"),
        "recover" => Some("1;31"),
        "problem" => Some("35"),
        _ => None,
    }
}

/// [`status_table`] written as it is made: at 10^5 identities the table is not held in memory.
/// With `colour`, states are coloured (for a terminal; never for a pipe or with `NO_COLOR`).
pub fn write_status_table(
    survey: &Survey,
    colour: bool,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let header = [
        "NODE",
        "SERVICE",
        "KIND",
        "EXPIRES",
        "LEFT",
        "SELF-ROTATES",
        "STATE",
        "REASON",
    ];
    let table = || {
        std::iter::once(header.map(str::to_string).to_vec()).chain(rows(survey).map(
            |(identity, c)| {
                vec![
                    identity.node.clone(),
                    identity.service.clone(),
                    kind_str(c).to_string(),
                    c.window
                        .map_or_else(|| "-".to_string(), |w| day(w.not_after)),
                    c.window
                        .map_or_else(|| "-".to_string(), |w| human(w.not_after - survey.as_of)),
                    if c.self_rotates { "yes" } else { "no" }.to_string(),
                    c.verdict.state.as_str().to_string(),
                    c.verdict.reason.clone(),
                ]
            },
        ))
    };
    write!(w, "{}\n{}\n\n", ca_line(survey), policy_line(survey))?;
    const STATE_COLUMN: usize = 6;
    let style = |column: usize, cell: &str| {
        (colour && column == STATE_COLUMN)
            .then(|| colour_of(cell))
            .flatten()
    };
    write_aligned(w, table, style)?;
    if !survey.issues.is_empty() || survey.hidden > 0 {
        writeln!(w)?;
    }
    for issue in &survey.issues {
        let tag = if issue.is_problem { "problem" } else { "note" };
        writeln!(w, "{tag}: {}: {}", issue.path, issue.message)?;
    }
    if let Some(line) = hidden_line(survey) {
        writeln!(w, "{line}")?;
    }
    writeln!(w)?;
    for line in Totals::of(survey).summary(survey) {
        writeln!(w, "{line}")?;
    }
    Ok(())
}

/// The one line that counts the hidden entries ignored (`note: ignored 2 hidden entries …`).
fn hidden_line(survey: &Survey) -> Option<String> {
    (survey.hidden > 0).then(|| {
        format!(
            "note: ignored {} (names starting with a dot under nodes/ or a node)",
            count(survey.hidden, "hidden entry", "hidden entries")
        )
    })
}

/// The plan summary for stderr: counts per action, then each identity that needs a person.
pub fn plan_summary(survey: &Survey) -> String {
    let mut counts = [0usize; 4];
    for (_, c) in rows(survey) {
        counts[c.verdict.state.action() as usize] += 1;
    }
    let mut out = format!(
        "plan: {}, {}: {} rotate, {} keep, {} recover, {} skip\n",
        count(survey.identities.len(), "identity", "identities"),
        count(counts.iter().sum::<usize>(), "credential", "credentials"),
        counts[Action::Rotate as usize],
        counts[Action::Keep as usize],
        counts[Action::Recover as usize],
        counts[Action::Skip as usize],
    );
    out.push_str(&format!("{}\n", policy_line(survey)));
    if survey.context().ca_caps_validity() {
        out.push_str(&format!("warning: {}\n", ca_line(survey)));
    }
    for warning in &survey.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    let nodes = survey.root.join("nodes");
    for identity in &survey.identities {
        if let Some((tag, reasons)) = identity.needs_person() {
            let dir = nodes.join(&identity.node).join(&identity.service);
            out.push_str(&format!(
                "{tag}: {}: {}\n",
                dir.display(),
                reasons
            ));
        }
    }
    for issue in survey.issues.iter() {
        let tag = if issue.is_problem { "problem" } else { "note" };
        out.push_str(&format!(
            "{tag}: {}: {}\n",
            survey.root.join(&issue.path).display(),
            issue.message
        ));
    }
    out
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn align(rows: &[Vec<String>]) -> String {
    let mut out = Vec::new();
    write_aligned(&mut out, || rows.iter().cloned(), |_, _| None)
        .expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// [`align`] for rows made on demand: one pass measures the columns, a second writes them.
/// `style` gives the ANSI colour of a cell (by column and text), wrapped around it after
/// padding so that columns stay aligned.
fn write_aligned<I: Iterator<Item = Vec<String>>>(
    w: &mut impl Write,
    rows: impl Fn() -> I,
    style: impl Fn(usize, &str) -> Option<&'static str>,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows() {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(&row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let padded = if i + 1 == row.len() {
                cell.clone()
            } else {
                format!("{cell:<width$}", width = widths[i])
            };
            match style(i, cell) {
                Some(code) => line.push_str(&format!(
                    "\x1b[{code}m{cell}\x1b[0m{}",
                    &padded[cell.len()..]
                )),
                None => line.push_str(&padded),
            }
            if i + 1 < row.len() {
                line.push_str("  ");
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}
