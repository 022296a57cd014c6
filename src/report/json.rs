//! `status --format json` (docs/design.md §5, schema in docs/status.schema.json): every
//! credential with its path, expiry as RFC 3339 and as whole seconds left, state, action and
//! reason; totals per state; the CA; the policy in force. Versioned; written as the identities
//! pass, so the fleet is never held. Names, dates and digests only: never a secret.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::classify::{Action, State, human, stamp};
use crate::policy::{Policy, Source};
use crate::survey::{Judged, Scope};
use crate::survey::totals::Totals;

/// The version of the status document; a change that can break a reader bumps it.
pub(super) const VERSION: u32 = 1;

/// The status document. Its fields are written in this order; the credentials are written as
/// they pass, so that what is counted from them (`totals`) and what the listing finds besides
/// them (`issues`, `hidden_entries_ignored`) come after them.
struct StatusJson<'a, 'j> {
    scope: &'a Scope,
    pending: Option<&'a super::hooks::Pending>,
    judged: &'a RefCell<&'a mut Judged<'j>>,
}

impl Serialize for StatusJson<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let scope = self.scope;
        let mut doc = serializer.serialize_struct("StatusJson", 11)?;
        doc.serialize_field("version", &VERSION)?;
        doc.serialize_field("as_of", &stamp(scope.as_of))?;
        doc.serialize_field("root", &scope.root.to_string_lossy())?;
        doc.serialize_field("policy", &policy(scope))?;
        doc.serialize_field("ca", &ca(scope))?;
        doc.serialize_field("warnings", &scope.warnings)?;
        doc.serialize_field(
            "credentials",
            &Rows {
                scope,
                judged: self.judged,
            },
        )?;
        let mut judged = self.judged.borrow_mut();
        let end = judged.end();
        let issues: Vec<IssueJson<'_>> = end
            .issues
            .iter()
            .map(|i| IssueJson {
                path: &i.path,
                reason: &i.message,
                problem: i.is_problem,
            })
            .collect();
        doc.serialize_field("issues", &issues)?;
        doc.serialize_field("hidden_entries_ignored", &end.hidden)?;
        doc.serialize_field("totals", &totals(scope, &end.totals))?;
        doc.serialize_field("pending_hooks", &self.pending.map(super::hooks::PendingJson::new))?;
        doc.end()
    }
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
    rotation: RotationJson<'a>,
}

/// A CA rotation's stage, and the CA trusted beside the active one while it is under way.
#[derive(Serialize)]
struct RotationJson<'a> {
    stage: &'static str,
    other: Option<OtherCaJson<'a>>,
}

#[derive(Serialize)]
struct OtherCaJson<'a> {
    role: crate::ca::Role,
    common_name: &'a str,
    algorithm: String,
    path: String,
    not_after: String,
    sha256: String,
}

#[derive(Serialize)]
struct TotalsJson {
    identities: usize,
    credentials: usize,
    credentials_by_state: BTreeMap<&'static str, usize>,
    identities_by_state: BTreeMap<&'static str, usize>,
    past_expiry: usize,
    unreadable_files: usize,
    /// Identities with a problem (as `identities_by_state.problem`).
    problems: usize,
    /// Issues that are problems: paths under `nodes/` that are not identities.
    fleet_issues: usize,
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
    expires: Option<&'a str>,
    expires_at: Option<&'a str>,
    seconds_left: Option<i64>,
    time_left: Option<String>,
    self_rotates: bool,
    state: &'static str,
    action: Action,
    reason: &'a str,
    /// `false`: the file is there but not readable by this user (not a problem).
    readable: bool,
    /// What a file not readable by this user kept from being checked.
    not_checked: &'static [&'static str],
    /// `active`, `next` or `previous`: the CA that signed it (null when it could not be judged).
    signed_by: Option<crate::ca::Role>,
}

#[derive(Serialize)]
struct IssueJson<'a> {
    path: &'a str,
    reason: &'a str,
    problem: bool,
}

/// Serializes the status rows of the identities as they pass, as a sequence, without
/// collecting them.
struct Rows<'a, 'j> {
    scope: &'a Scope,
    judged: &'a RefCell<&'a mut Judged<'j>>,
}

impl Serialize for Rows<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let scope = self.scope;
        let mut seq = serializer.serialize_seq(None)?;
        let mut judged = self.judged.borrow_mut();
        for i in judged.by_ref() {
            for c in i.credentials() {
                let expires_at = c.window.map(|w| stamp(w.not_after));
                seq.serialize_element(&RowJson {
                    node: i.node(),
                    service: i.service(),
                    kind: c.kind.as_str(),
                    path: scope
                        .path_of(&i.id, c.kind)
                        .to_string_lossy()
                        .into_owned(),
                    expires: expires_at.as_deref(),
                    expires_at: expires_at.as_deref(),
                    seconds_left: c.window.map(|w| (w.not_after - scope.as_of).num_seconds()),
                    time_left: c.window.map(|w| human(w.not_after - scope.as_of)),
                    self_rotates: c.self_rotates,
                    state: c.verdict.state.as_str(),
                    action: c.verdict.state.action(),
                    reason: &c.verdict.reason,
                    readable: c.readable(),
                    not_checked: c.not_checked(),
                    signed_by: c.signed_by,
                })?;
            }
        }
        seq.end()
    }
}

fn by_state(counts: &[usize; State::ALL.len()]) -> BTreeMap<&'static str, usize> {
    State::ALL
        .iter()
        .zip(counts)
        .map(|(s, n)| (s.as_str(), *n))
        .collect()
}

fn totals(scope: &Scope, t: &Totals) -> TotalsJson {
    TotalsJson {
        identities: t.identities_total(),
        credentials: t.credentials_total(),
        credentials_by_state: by_state(&t.credentials),
        identities_by_state: by_state(&t.identities),
        past_expiry: t.past_expiry,
        unreadable_files: t.unreadable_files,
        problems: t.problems(),
        fleet_issues: t.fleet_issues,
        notes: t.notes,
        nearest: t.nearest.clone().map(|n| NearestJson {
            expires_at: stamp(n.not_after),
            seconds_left: (n.not_after - scope.as_of).num_seconds(),
            node: n.id.node().to_string(),
            service: n.id.service().to_string(),
            kind: n.kind,
        }),
    }
}

fn policy(scope: &Scope) -> PolicyJson<'_> {
    let (path, file_sha256) = match &scope.policy_source {
        Source::Builtin => (None, None),
        Source::File { path, sha256 } => {
            (Some(path.to_string_lossy().into_owned()), Some(sha256.hex()))
        }
    };
    PolicyJson {
        source: scope.policy_source.kind(),
        path,
        file_sha256,
        policy_sha256: scope.policy.digest().hex(),
        values: &scope.policy,
    }
}

fn ca(scope: &Scope) -> CaJson<'_> {
    let ca = &scope.ca;
    CaJson {
        common_name: &ca.common_name,
        algorithm: ca.public.alg.to_string(),
        path: crate::ca::CaDir::of(&scope.root).active().cert.to_string_lossy().into_owned(),
        not_after: stamp(ca.not_after),
        expires_at: stamp(ca.not_after),
        seconds_left: (ca.not_after - scope.as_of).num_seconds(),
        time_left: human(ca.not_after - scope.as_of),
        sha256: ca.sha256.hex(),
        key: ca.key.kind(),
        key_present: matches!(ca.key, crate::ca::KeyAccess::Present { .. }),
        caps_validity: scope.context().ca_caps_validity(),
        rotation: RotationJson {
            stage: scope.rotation.as_ref().map_or("steady", |r| r.stage.name()),
            other: scope.rotation.as_ref().map(|r| OtherCaJson {
                role: r.role(),
                common_name: &r.other.common_name,
                algorithm: r.other.public.alg.to_string(),
                path: crate::ca::CaDir::of(&scope.root)
                    .of_role(r.role())
                    .cert
                    .to_string_lossy()
                    .into_owned(),
                not_after: stamp(r.other.not_after),
                sha256: r.other.sha256.hex(),
            }),
        },
    }
}

/// `status --format json`, written as the identities pass.
pub(crate) fn write_status_json(
    scope: &Scope,
    judged: &mut Judged<'_>,
    pending: Option<&super::hooks::Pending>,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let judged = RefCell::new(judged);
    let doc = StatusJson {
        scope,
        pending,
        judged: &judged,
    };
    // A buffer of its own type: the serializer's many small writes go to it inline, not each
    // through `w` (a `dyn Write` where a command delivers its output).
    let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
    serde_json::to_writer_pretty(&mut w, &doc)?;
    w.write_all(b"\n")?;
    w.flush()
}
