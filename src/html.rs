//! HTML reports people would rather look at than read (docs/design.md §5, `--format html`):
//! the expiry report of `status` (`html::expiry`), the plan report of `plan` (`html::plan`) and
//! the review page of a plan file, made by `apply PLAN --dry-run` (`html::review`).
//! This module holds what the pages share: the page shell with its inline stylesheet (no
//! script, no network, readable printed), escaping, colours and the small tables. Pages
//! aggregate (counts per day, per node and service, per reason) so that they stay small and fast
//! at 10^5 identities; lists of single identities are capped and say how many more there are.
//! Pure: a survey in, text out; names, dates, reasons and digests only, never a secret.

pub(crate) mod expiry;
pub(crate) mod plan;
pub(crate) mod review;

use std::fmt::Write as _;

use crate::classify::{State, stamp};
use crate::scan::Issue;
use crate::survey::{End, Person, Scope};

/// At most this many single identities are listed in a table; the rest are counted.
pub(crate) const MAX_LISTED: usize = 500;

/// `text` escaped for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour a state is drawn in.
pub(crate) fn state_colour(state: State) -> &'static str {
    match state {
        State::Healthy => "#2e7d32",
        State::Fresh => "#81c784",
        State::Due => "#f9a825",
        State::Stalled => "#ef6c00",
        State::Expired => "#e53935",
        State::Recover => "#8e0000",
        State::Problem => "#7b1fa2",
        State::Unreadable => "#90a4ae",
    }
}

const STYLE: &str = "
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif;
  margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #1d2329; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d7dde3; padding-bottom: 4px; }
.meta { color: #58636e; margin: 0 0 16px; }
.meta code { font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #d7dde3; border-radius: 6px; padding: 8px 12px; min-width: 92px; }
.card .n { font-size: 22px; font-weight: 650; display: block; }
.card .l { color: #58636e; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 5px; vertical-align: baseline; }
.alert { border-left: 4px solid #e53935; background: #fdecea; padding: 8px 12px; margin: 12px 0; }
.ok { border-left: 4px solid #2e7d32; background: #edf7ee; padding: 8px 12px; margin: 12px 0; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid #e6eaee; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.when { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid td { width: 18px; height: 18px; padding: 0; border: 1px solid #d7dde3;
  font-size: 9px; text-align: center; vertical-align: middle; font-variant-numeric: tabular-nums; }
.grid th { font-weight: 500; font-size: 11px; white-space: nowrap; }
.grid th.col { writing-mode: vertical-rl; transform: rotate(180deg); height: 90px;
  vertical-align: bottom; padding: 2px 0; }
.legend span { margin-right: 14px; white-space: nowrap; }
#grid-numbers td:first-child { white-space: nowrap; }
.more { color: #58636e; font-style: italic; }
.signed { border: 2px solid #1d2329; border-radius: 6px; padding: 10px 14px; margin: 12px 0;
  font-size: 15px; }
.signed .digest { font-size: 15px; font-weight: 650; word-break: break-all; }
svg text { font: 11px system-ui, 'DejaVu Sans', sans-serif; fill: #58636e; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  table, svg, .cards { break-inside: avoid; }
  .grid td, .swatch { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
";

/// The page's opening: doctype, title, stylesheet, heading and the line under it.
pub(crate) fn open(out: &mut String, title: &str, scope: &Scope) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n\
         <p class=\"meta\">Fleet <code>{}</code> as of <time id=\"as-of\">{}</time></p>\n",
        escape(title),
        escape(title),
        escape(&scope.root.to_string_lossy()),
        stamp(scope.as_of),
    );
}

/// The page's end.
pub(crate) fn close(out: &mut String) {
    out.push_str("<p class=\"meta\">Made by rekey. Self-contained: no script, nothing fetched.</p>\n</body>\n</html>\n");
}

/// A card: a big number with a label; `id` names it for tests and readers.
pub(crate) fn card(out: &mut String, id: &str, n: usize, label: &str, colour: Option<&str>) {
    let swatch = colour
        .map(|c| format!("<span class=\"swatch\" style=\"background:{c}\"></span>"))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<div class=\"card\"><span class=\"n\" id=\"{id}\">{n}</span>\
         <span class=\"l\">{swatch}{}</span></div>",
        escape(label)
    );
}

/// The policy in force: where it came from, its digest and its values.
pub(crate) fn policy_section(out: &mut String, scope: &Scope) {
    let p = &scope.policy;
    let _ = write!(
        out,
        "<h2>Policy in force</h2>\n<p id=\"policy\">{}<br><code>policy_sha256 {}</code></p>\n\
         <table><tr><th>validity_days</th><th>stalled_below_percent</th><th>min_age_hours</th>\
         <th>keys</th><th>max_plan_age_hours</th></tr><tr><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
         </tr></table>\n<table><tr><th>service</th><th>renews its certificate</th>\
         <th>rotates its token</th></tr>",
        escape(&scope.policy_source.describe()),
        p.digest(),
        p.validity_days,
        p.stalled_below_percent,
        p.min_age_hours,
        match p.keys {
            crate::policy::KeyMode::Rotate => "rotate",
            crate::policy::KeyMode::Reuse => "reuse",
        },
        p.max_plan_age_hours,
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    for (name, r) in &p.services {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            yes(r.self_renews_cert),
            yes(r.self_rotates_token)
        );
    }
    out.push_str("</table>\n<p class=\"meta\">A service not listed renews nothing by itself.</p>\n");
}

/// Warnings the survey gathered, as an alert box.
pub(crate) fn warnings(out: &mut String, scope: &Scope) {
    for w in &scope.warnings {
        let _ = writeln!(out, "<div class=\"alert\">Warning: {}</div>", escape(w));
    }
}

/// What needs a person, for both pages: a heading with the counts (or `none` when there is
/// nothing), then the identities and the problems found outside identities, at most
/// [`MAX_LISTED`] of each, under the column `column`, each identity with the label and colour
/// `label` gives it (a state, or an action); `more` says where the rest are listed.
pub(crate) struct PeopleTable<'a> {
    pub(crate) none: &'a str,
    pub(crate) column: &'a str,
    pub(crate) label: fn(&Person) -> (&'static str, &'static str),
    pub(crate) problem_label: &'a str,
    pub(crate) more: &'a str,
}

impl PeopleTable<'_> {
    pub(crate) fn write(&self, out: &mut String, end: &End) -> std::io::Result<()> {
        let rows = &end.people;
        let problems: Vec<&Issue> = end.issues.iter().filter(|i| i.is_problem).collect();
        // The number in its own element (the tests read it), the noun agreeing with it.
        let counted = |id: &str, n: usize, one: &str, many: &str| {
            let noun = crate::count::noun(n, one, many);
            format!("<span id=\"{id}\">{n}</span> {noun}")
        };
        let _ = writeln!(
            out,
            "<h2>Needs a person: {}, {}</h2>",
            counted("attention-count", rows.len(), "identity", "identities"),
            counted("issue-count", problems.len(), "fleet issue", "fleet issues"),
        );
        if rows.is_empty() && problems.is_empty() {
            let _ = writeln!(out, "<div class=\"ok\">{}</div>", self.none);
            return Ok(());
        }
        let _ = writeln!(
            out,
            "<table id=\"attention\"><tr><th>node</th><th>service</th><th>{}</th>\
             <th>reason</th></tr>",
            self.column
        );
        for row in rows.read().take(MAX_LISTED) {
            let row = row?;
            let (label, colour) = (self.label)(&row);
            let _ = writeln!(
                out,
                "<tr class=\"attention-row\"><td>{}</td><td>{}</td><td><span class=\"swatch\" \
                 style=\"background:{}\"></span>{}</td><td>{}</td></tr>",
                escape(row.id.node()),
                escape(row.id.service()),
                colour,
                label,
                escape(&row.reasons),
            );
        }
        for issue in problems.iter().take(MAX_LISTED) {
            let _ = writeln!(
                out,
                "<tr class=\"issue-row\"><td colspan=\"2\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&issue.path),
                self.problem_label,
                escape(&issue.message)
            );
        }
        out.push_str("</table>\n");
        let hidden =
            rows.len().saturating_sub(MAX_LISTED) + problems.len().saturating_sub(MAX_LISTED);
        if hidden > 0 {
            let _ = writeln!(out, "<p class=\"more\">… and {hidden} more{}</p>", self.more);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let cases = [
            ("plain", "kms", "kms"),
            ("markup", "<b>&", "&lt;b&gt;&amp;"),
            ("quotes", "\"a\" 'b'", "&quot;a&quot; &#39;b&#39;"),
        ];
        for (name, input, want) in cases {
            assert_eq!(escape(input), want, "{name}");
        }
    }
}
