//! Prometheus text-format metrics of a survey (docs/design.md §5, `--format prometheus`), for
//! node_exporter's textfile collector. Certificates are named as x509-certificate-exporter
//! names them (`x509_cert_not_after` and friends, with its labels plus `node` and `service`) so
//! that its dashboards and alerts work as they are; `rekey_*` families carry what no exporter
//! has: tokens, the CA, states, the last writing run. Every family has HELP and TYPE, no sample
//! has a timestamp, and the order is fixed (families as below, samples by node, service).
//! Names, dates and digests only, never a secret.

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::classify::{Kind, State};
use crate::out::Spool;
use crate::survey::{Judged, Scope};
use crate::survey::totals::still_valid;

/// What the last writing run did, for `rekey_last_run_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastRun {
    /// The wall clock when the run started.
    pub(crate) started: DateTime<Utc>,
    pub(crate) done: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
}

/// Hooks left pending and hook attempts that failed, for `rekey_hooks_*` (left out when this
/// user may not read the run store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HookCounts {
    /// Hook calls earlier runs left pending.
    pub(crate) pending: usize,
    /// Hook attempts that failed or timed out, over every run recorded.
    pub(crate) failed_total: u64,
}

/// Which families to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Families {
    /// The `x509_cert_*` families; off where x509-certificate-exporter already watches the
    /// same files (`--no-x509-metrics`).
    pub(crate) x509: bool,
}

/// The CA families: each CA of the fleet's expiry, by its role (the active one, and during a
/// CA rotation the next or previous one beside it), and the stage of the rotation.
fn write_ca(scope: &Scope, w: &mut impl Write) -> std::io::Result<()> {
    let name = "rekey_ca_not_after_timestamp_seconds";
    family(
        w,
        name,
        "When each CA of the fleet expires, as a Unix time; role is active (ca/ca.crt, signs), \
         next (ca/next/ca.crt, after rekey ca begin) or previous (ca/previous/ca.crt, after \
         rekey ca switch).",
    )?;
    let dir = crate::ca::CaDir::of(&scope.root);
    for (role, ca) in scope.trusted().each() {
        let path = dir.of_role(role).cert;
        let l = labels(&[
            ("filepath", &path.to_string_lossy()),
            ("role", role.as_str()),
            ("subject_CN", &ca.common_name),
        ]);
        writeln!(w, "{name}{l} {}", ca.not_after.timestamp())?;
    }
    let stage = scope.stage();
    let name = "rekey_ca_rotation_stage";
    family(
        w,
        name,
        "The stage of the fleet's CA rotation: 0 steady (one CA), 1 begun (the next CA trusted, \
         not signing yet), 2 switched (the new CA signs, the previous one still trusted).",
    )?;
    writeln!(w, "{name} {}", stage.number())
}

/// One gauge family's header.
fn family(w: &mut impl Write, name: &str, help: &str) -> std::io::Result<()> {
    family_of(w, name, help, "gauge")
}

/// One family's header, of type `kind` (`gauge`, or `counter` for a `_total`).
fn family_of(w: &mut impl Write, name: &str, help: &str, kind: &str) -> std::io::Result<()> {
    writeln!(w, "# HELP {name} {help}")?;
    writeln!(w, "# TYPE {name} {kind}")
}

/// Appends a label value to `out`, escaped as the text format requires (`\\`, `\"`, `\n`).
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
fn escape(value: &str) -> String {
    let mut out = String::new();
    push_escaped(&mut out, value);
    out
}

/// Appends `{a="x",b="y"}` to `out` from label pairs, values escaped.
fn push_labels(out: &mut String, pairs: &[(&str, &str)]) {
    out.push('{');
    for (at, (key, value)) in pairs.iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        push_escaped(out, value);
        out.push('"');
    }
    out.push('}');
}

/// `{a="x",b="y"}` from label pairs, values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    push_labels(&mut out, pairs);
    out
}

/// The x509-certificate-exporter families, in the order written.
const X509: [(&str, &str); 3] = [
    (
        "x509_cert_not_before",
        "The date before which the certificate is not valid. Expressed as a Unix Epoch Time.",
    ),
    (
        "x509_cert_not_after",
        "The date after which the certificate expires. Expressed as a Unix Epoch Time.",
    ),
    (
        "x509_cert_expired",
        "Indicates if the certificate is currently expired.",
    ),
];

const TOKEN: &str = "rekey_token_not_after_timestamp_seconds";

/// Writes the metrics of the identities as they pass (and of the last writing run, when there
/// is one). The samples of a family must be written together, so the first family goes
/// straight to `w` and the others are set aside on disk ([`Spool`]) until every identity has
/// passed: memory stays flat.
pub(crate) fn write(
    scope: &Scope,
    judged: &mut Judged<'_>,
    last_run: Option<&LastRun>,
    hooks: Option<HookCounts>,
    families: Families,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let x509 = if families.x509 { &X509[..] } else { &[] };
    // The first x509 family to `w`, the other two and the tokens' aside.
    let mut aside = Vec::new();
    for _ in x509.iter().skip(1) {
        aside.push(Spool::new()?);
    }
    let mut tokens = Spool::new()?;
    if let Some((name, help)) = x509.first() {
        family(w, name, help)?;
    }
    let mut line = String::with_capacity(512);
    for i in judged.by_ref() {
        if let Some((c, window)) = i.cert.as_ref().and_then(|c| Some((c, c.window?))) {
            let names = c.names.as_ref();
            let path = scope.path_of(&i.id, Kind::Cert);
            let path = path.to_string_lossy();
            let mut label_set = String::with_capacity(256);
            push_labels(
                &mut label_set,
                &[
                    ("filename", crate::scan::CERT_FILE),
                    ("filepath", &path),
                    ("issuer_CN", &scope.ca.common_name),
                    ("node", i.node()),
                    ("serial_number", names.map_or("", |n| n.serial.as_str())),
                    ("service", i.service()),
                    ("subject_CN", names.map_or("", |n| n.subject_cn.as_str())),
                ],
            );
            for (at, (name, _)) in x509.iter().enumerate() {
                let value = match *name {
                    "x509_cert_not_before" => window.not_before.timestamp(),
                    "x509_cert_not_after" => window.not_after.timestamp(),
                    _ => i64::from(!still_valid(Kind::Cert, window.not_after, scope.as_of)),
                };
                line.clear();
                line.push_str(name);
                line.push_str(&label_set);
                match at {
                    0 => writeln!(w, "{line} {value}")?,
                    _ => writeln!(aside[at - 1].writer(), "{line} {value}")?,
                }
            }
        }
        if let Some(window) = i.token.as_ref().and_then(|t| t.window) {
            let path = scope.path_of(&i.id, Kind::Token);
            let path = path.to_string_lossy();
            let l = labels(&[
                ("filepath", &path),
                ("filename", crate::scan::TOKEN_FILE),
                ("node", i.node()),
                ("service", i.service()),
            ]);
            writeln!(tokens.writer(), "{TOKEN}{l} {}", window.not_after.timestamp())?;
        }
    }
    for ((name, help), spool) in x509.iter().skip(1).zip(aside) {
        family(w, name, help)?;
        spool.copy_to(w)?;
    }
    family(
        w,
        TOKEN,
        "When the identity's login token (token.jwt) expires, as a Unix time.",
    )?;
    tokens.copy_to(w)?;
    write_ca(scope, w)?;
    let totals = &judged.end().totals;
    for (name, help, counts) in [
        (
            "rekey_credentials",
            "Credentials (certificates and tokens) per state, as rekey status judges them.",
            &totals.credentials,
        ),
        (
            "rekey_identities",
            "Identities per state (an identity is as urgent as its worst credential).",
            &totals.identities,
        ),
    ] {
        family(w, name, help)?;
        for (state, n) in State::ALL.iter().zip(counts) {
            writeln!(w, "{name}{} {n}", labels(&[("state", state.as_str())]))?;
        }
    }
    family(
        w,
        "rekey_fleet_issues",
        "Fleet issues: paths under nodes/ that are not identities and are problems (links, bad \
         names, unreadable entries); identities with a problem are in rekey_identities (state problem).",
    )?;
    writeln!(w, "rekey_fleet_issues {}", totals.fleet_issues)?;
    if let Some(run) = last_run {
        family(
            w,
            "rekey_last_run_timestamp_seconds",
            "When the last writing run (apply, rotate, recover, rollback) started, as a Unix time.",
        )?;
        writeln!(w, "rekey_last_run_timestamp_seconds {}", run.started.timestamp())?;
        family(
            w,
            "rekey_last_run_identities",
            "Identities the last writing run attempted, per outcome.",
        )?;
        for (outcome, n) in [("done", run.done), ("skipped", run.skipped), ("failed", run.failed)] {
            writeln!(w, "rekey_last_run_identities{} {n}", labels(&[("outcome", outcome)]))?;
        }
    }
    if let Some(hooks) = hooks {
        family(
            w,
            "rekey_hooks_pending",
            "Hook calls earlier writing runs left pending (failed, timed out or never ran): \
             rekey hooks list.",
        )?;
        writeln!(w, "rekey_hooks_pending {}", hooks.pending)?;
        family_of(
            w,
            "rekey_hooks_failed_total",
            "Hook attempts that failed or timed out during writing runs, as their reports count them (not hooks retry, nor an attempt a crash cut off).",
            "counter",
        )?;
        writeln!(w, "rekey_hooks_failed_total {}", hooks.failed_total)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let cases = [
            ("plain", "kms", "kms"),
            ("quote", "a\"b", "a\\\"b"),
            ("backslash", "a\\b", "a\\\\b"),
            ("newline", "a\nb", "a\\nb"),
        ];
        for (name, input, want) in cases {
            assert_eq!(escape(input), want, "{name}");
        }
        assert_eq!(labels(&[("a", "1"), ("b", "x\"")]), "{a=\"1\",b=\"x\\\"\"}");
    }
}
