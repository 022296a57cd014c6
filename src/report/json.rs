//! `status --format json` (docs/design.md §5, schema in docs/status.schema.json): every
//! credential with its path, expiry as RFC 3339 and as whole seconds left, state, action and
//! reason; totals per state; the CA; the policy in force. Versioned; written as it is made, so
//! 10^5 identities are never held twice. Names, dates and digests only: never a secret.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{kind_str, rows};
use crate::classify::{Action, State, human, stamp};
use crate::policy::{Policy, Source};
use crate::survey::Survey;
use crate::totals::Totals;

/// The version of the status document; a change that can break a reader bumps it.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct StatusJson<'a> {
    version: u32,
    as_of: String,
    root: String,
    policy: PolicyJson<'a>,
    ca: CaJson<'a>,
    totals: TotalsJson,
    credentials: Rows<'a>,
    issues: Vec<IssueJson<'a>>,
    /// Entries under `nodes/` or a node whose names start with a dot (`.snapshot`, `.git`).
    hidden_entries_ignored: usize,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct PolicyJson<'a> {
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_sha256: Option<String>,
    policy_sha256: String,
    #[serde(flatten)]
    values: &'a Policy,
}

#[derive(Serialize)]
struct CaJson<'a> {
    common_name: &'a str,
    algorithm: String,
    path: String,
    not_after: String,
    expires_at: String,
    seconds_left: i64,
    time_left: String,
    sha256: String,
    /// `present`, `not_readable`, `absent` or `unusable` (the key is never read here).
    key: &'static str,
    key_present: bool,
    caps_validity: bool,
}

#[derive(Serialize)]
struct TotalsJson {
    identities: usize,
    credentials: usize,
    credentials_by_state: BTreeMap<&'static str, usize>,
    identities_by_state: BTreeMap<&'static str, usize>,
    past_expiry: usize,
    problems: usize,
    notes: usize,
    nearest: Option<NearestJson>,
}

#[derive(Serialize)]
struct NearestJson {
    node: String,
    service: String,
    kind: crate::classify::Kind,
    expires_at: String,
    seconds_left: i64,
}

#[derive(Serialize)]
struct RowJson<'a> {
    node: &'a str,
    service: &'a str,
    kind: &'static str,
    path: String,
    /// The same instant as `expires_at` (kept for readers of the first status JSON).
    expires: Option<String>,
    expires_at: Option<String>,
    seconds_left: Option<i64>,
    time_left: Option<String>,
    self_rotates: bool,
    state: &'static str,
    action: Action,
    reason: &'a str,
}

#[derive(Serialize)]
struct IssueJson<'a> {
    path: &'a str,
    reason: &'a str,
    problem: bool,
}

/// Serializes the status rows of a survey as a sequence, without collecting them.
struct Rows<'a>(&'a Survey);

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let survey = self.0;
        serializer.collect_seq(rows(survey).map(|(i, c)| RowJson {
            node: &i.node,
            service: &i.service,
            kind: kind_str(c),
            path: survey.path_of(i, c.kind).to_string_lossy().into_owned(),
            expires: c.window.map(|w| stamp(w.not_after)),
            expires_at: c.window.map(|w| stamp(w.not_after)),
            seconds_left: c.window.map(|w| (w.not_after - survey.as_of).num_seconds()),
            time_left: c.window.map(|w| human(w.not_after - survey.as_of)),
            self_rotates: c.self_rotates,
            state: c.verdict.state.as_str(),
            action: c.verdict.state.action(),
            reason: &c.verdict.reason,
        }))
    }
}

fn by_state(counts: &[usize; 7]) -> BTreeMap<&'static str, usize> {
    State::ALL
        .iter()
        .zip(counts)
        .map(|(s, n)| (s.as_str(), *n))
        .collect()
}

fn totals(survey: &Survey) -> TotalsJson {
    let t = Totals::of(survey);
    TotalsJson {
        identities: survey.identities.len(),
        credentials: t.credentials.iter().sum(),
        credentials_by_state: by_state(&t.credentials),
        identities_by_state: by_state(&t.identities),
        past_expiry: t.past_expiry,
        problems: t.problems,
        notes: t.notes,
        nearest: t.nearest.map(|n| NearestJson {
            expires_at: stamp(n.not_after),
            seconds_left: (n.not_after - survey.as_of).num_seconds(),
            node: n.node,
            service: n.service,
            kind: n.kind,
        }),
    }
}

fn policy(survey: &Survey) -> PolicyJson<'_> {
    let (path, file_sha256) = match &survey.policy_source {
        Source::Builtin => (None, None),
        Source::File { path, sha256 } => {
            (Some(path.to_string_lossy().into_owned()), Some(sha256.hex()))
        }
    };
    PolicyJson {
        source: survey.policy_source.kind(),
        path,
        file_sha256,
        policy_sha256: survey.policy.digest().hex(),
        values: &survey.policy,
    }
}

/// `status --format json`, written as it is made.
pub fn write_status_json(survey: &Survey, w: &mut impl Write) -> std::io::Result<()> {
    let ca = &survey.ca;
    let doc = StatusJson {
        version: VERSION,
        as_of: stamp(survey.as_of),
        root: survey.root.to_string_lossy().into_owned(),
        policy: policy(survey),
        ca: CaJson {
            common_name: &ca.common_name,
            algorithm: ca.public.alg.to_string(),
            path: survey.root.join("ca/ca.crt").to_string_lossy().into_owned(),
            not_after: stamp(ca.not_after),
            expires_at: stamp(ca.not_after),
            seconds_left: (ca.not_after - survey.as_of).num_seconds(),
            time_left: human(ca.not_after - survey.as_of),
            sha256: ca.sha256.hex(),
            key: ca.key.kind(),
            key_present: matches!(ca.key, crate::ca::KeyAccess::Present { .. }),
            caps_validity: survey.context().ca_caps_validity(),
        },
        totals: totals(survey),
        credentials: Rows(survey),
        issues: survey
            .issues
            .iter()
            .map(|i| IssueJson {
                path: &i.path,
                reason: &i.message,
                problem: i.is_problem,
            })
            .collect(),
        hidden_entries_ignored: survey.hidden,
        warnings: &survey.warnings,
    };
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    w.write_all(b"\n")
}
