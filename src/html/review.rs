//! The review page of a plan file (`apply PLAN --dry-run --format html`): what a reviewer signs
//! off is that exact file, so the page names it and carries its sha256 (the `plan_file_sha256`
//! the run records and prints), the digests and date the plan was made with, and what `apply`
//! would do with it now, from the dry run's own report: the counts, each identity that will
//! rotate with its new validity (capped at [`MAX_ROTATING`], the rest counted), every identity
//! refused with why, what is left for a person, and the policy in force. Pure: values in, text
//! out; names, dates, reasons and digests only, never a secret.

use std::fmt::Write as _;
use std::io::Write;

use chrono::{DateTime, Utc};

use super::{card, close, escape, open, policy_section, warnings};
use crate::classify::stamp;
use crate::digest::Digest;
use crate::plan::ValidPlan;
use crate::survey::Scope;

/// At most this many identities that will rotate are listed; the rest are counted.
pub(crate) const MAX_ROTATING: usize = 2_000;

/// At most this many identities left for a person are listed; the rest are counted (those the
/// plan asks for and the fleet refuses are all listed: they are bounded by the plan).
const MAX_ATTENTION: usize = 2_000;

/// What the page is made of: the plan file as read, the fleet at the dry run's date, and what
/// the dry run decided.
pub(crate) struct Review<'a> {
    /// The plan file as named on the command line.
    pub(crate) plan_file: &'a str,
    pub(crate) plan: &'a ValidPlan,
    /// The fleet at the dry run's date: its root, the CA and the policy in force.
    pub(crate) scope: &'a Scope,
    pub(crate) run: Decided<'a>,
}

/// What the dry run's report says, in the page's terms.
pub(crate) struct Decided<'a> {
    /// The run date.
    pub(crate) as_of: DateTime<Utc>,
    /// The report's `plan_file_sha256`.
    pub(crate) plan_file_sha256: &'a Digest,
    /// The report's counts: identities done (will rotate), skipped, failed; credentials.
    pub(crate) done: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    pub(crate) credentials: usize,
    pub(crate) rotating: Vec<Rotates<'a>>,
    /// Identities skipped or failed, with why.
    pub(crate) refused: Vec<Left<'a>>,
    /// What is left for a person (`recover`, problems, fleet issues).
    pub(crate) attention: Vec<Left<'a>>,
    pub(crate) warnings: &'a [String],
}

/// An identity the run would rotate.
pub(crate) struct Rotates<'a> {
    /// `nodes/<node>/<service>`.
    pub(crate) dir: &'a str,
    /// The files replaced (`cert.pem`, `key.pem`, `token.jwt`).
    pub(crate) files: Vec<&'a str>,
    pub(crate) cert_until: Option<&'a str>,
    pub(crate) token_until: Option<&'a str>,
    /// Why a credential of it is left as it is (empty: none is).
    pub(crate) note: &'a str,
}

/// An identity (or a path) left alone, with its outcome and why.
pub(crate) struct Left<'a> {
    pub(crate) dir: &'a str,
    pub(crate) what: &'static str,
    pub(crate) reason: &'a str,
}

/// Writes the review page.
pub(crate) fn write(review: &Review<'_>, w: &mut impl Write) -> std::io::Result<()> {
    let (plan, run) = (review.plan, &review.run);
    let mut out = String::with_capacity(64 * 1024 + 256 * run.rotating.len().min(MAX_ROTATING));
    open(&mut out, "Review of a plan file", review.scope);
    let _ = writeln!(
        out,
        "<div class=\"signed\">Plan file <code id=\"plan-file\">{}</code><br>sha256 \
         <code class=\"digest\" id=\"plan-sha256\">{}</code></div>\n<table id=\"digests\">\
         <tr><th>plan made as of</th><td><time id=\"plan-as-of\">{}</time></td></tr>\
         <tr><th>dry run as of</th><td><time id=\"run-as-of\">{}</time></td></tr>\
         <tr><th>policy_sha256 (plan)</th><td><code id=\"plan-policy\">{}</code></td></tr>\
         <tr><th>ca_sha256 (plan)</th><td><code id=\"plan-ca\">{}</code></td></tr>\
         <tr><th>ca_stage (plan)</th><td><code id=\"plan-ca-stage\">{}</code>{}</td></tr></table>\n\
         <p class=\"meta\">What <code>rekey apply</code> would do with this file at the dry \
         run's date: it refuses a plan whose policy or CA digest, or CA rotation stage, differs \
         from the fleet's, and \
         rotates only what the plan asks and the fleet itself judges due. The run prints and \
         records the same sha256 (<code>plan_file_sha256</code>).</p>",
        escape(review.plan_file),
        run.plan_file_sha256,
        stamp(plan.as_of),
        stamp(run.as_of),
        plan.policy_sha256,
        plan.ca_sha256,
        plan.ca_stage.name(),
        plan.ca_other_sha256.map_or(String::new(), |d| format!(
            " beside <code id=\"plan-ca-other\">{d}</code> (ca_other_sha256)"
        )),
    );
    warnings(&mut out, review.scope);
    for w in run.warnings {
        let _ = writeln!(out, "<div class=\"alert\">Warning: {}</div>", escape(w));
    }
    out.push_str("<h2>What apply would do</h2>\n<div class=\"cards\">");
    card(&mut out, "review-done", run.done, "will rotate", Some("#f9a825"));
    card(&mut out, "review-skipped", run.skipped, "refused", Some("#7b1fa2"));
    card(&mut out, "review-failed", run.failed, "would fail", Some("#e53935"));
    card(&mut out, "review-credentials", run.credentials, "credentials replaced", None);
    out.push_str("</div>\n");
    rotating_section(&mut out, &run.rotating);
    left_section(
        &mut out,
        "Refused",
        "refused",
        &run.refused,
        usize::MAX,
        "The fleet refuses nothing the plan asks.",
    );
    left_section(
        &mut out,
        "Left for a person",
        "attention",
        &run.attention,
        MAX_ATTENTION,
        "Nothing needs <code>rekey recover</code> and nothing has a problem.",
    );
    policy_section(&mut out, review.scope);
    close(&mut out);
    w.write_all(out.as_bytes())
}

/// The identities that will rotate, at most [`MAX_ROTATING`], with their new validity.
fn rotating_section(out: &mut String, rows: &[Rotates<'_>]) {
    let _ = writeln!(
        out,
        "<h2>Will rotate: {}</h2>",
        crate::count::count(rows.len(), "identity", "identities")
    );
    if rows.is_empty() {
        out.push_str("<div class=\"ok\">Nothing would rotate.</div>\n");
        return;
    }
    out.push_str(
        "<table id=\"rotate\"><tr><th>identity</th><th>files</th><th>certificate until</th>\
         <th>token until</th><th>note</th></tr>\n",
    );
    let until = |t: Option<&str>| t.map(escape).unwrap_or_else(|| "kept".to_string());
    for row in rows.iter().take(MAX_ROTATING) {
        let _ = writeln!(
            out,
            "<tr class=\"rotate-row\"><td>{}</td><td>{}</td><td class=\"when\">{}</td>\
             <td class=\"when\">{}</td><td>{}</td></tr>",
            escape(row.dir),
            escape(&row.files.join(", ")),
            until(row.cert_until),
            until(row.token_until),
            escape(row.note),
        );
    }
    out.push_str("</table>\n");
    if rows.len() > MAX_ROTATING {
        let _ = writeln!(
            out,
            "<p class=\"more\">… and <span id=\"rotate-more\">{}</span> more \
             (<code>rekey apply PLAN --dry-run --format json</code> lists every one).</p>",
            rows.len() - MAX_ROTATING
        );
    }
}

/// Identities left alone with why, at most `cap` of them; `none` when there are none.
fn left_section(out: &mut String, title: &str, id: &str, rows: &[Left<'_>], cap: usize, none: &str) {
    let _ = writeln!(
        out,
        "<h2>{title}: <span id=\"{id}-count\">{}</span></h2>",
        rows.len()
    );
    if rows.is_empty() {
        let _ = writeln!(out, "<div class=\"ok\">{none}</div>");
        return;
    }
    let _ = writeln!(
        out,
        "<table id=\"{id}\"><tr><th>identity</th><th>outcome</th><th>reason</th></tr>"
    );
    for row in rows.iter().take(cap) {
        let _ = writeln!(
            out,
            "<tr class=\"{id}-row\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(row.dir),
            row.what,
            escape(row.reason),
        );
    }
    out.push_str("</table>\n");
    if rows.len() > cap {
        let _ = writeln!(out, "<p class=\"more\">… and {} more.</p>", rows.len() - cap);
    }
}
