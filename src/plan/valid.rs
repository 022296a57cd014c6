//! A plan's values validated for `apply`: its header whole, then one identity entry at a time
//! (`plan::read` streams the file through here), into types that cannot hold a bad name, a bad
//! date or a bad digest. Pure: parsed values in, validated values or the first thing wrong out.

use std::path::PathBuf;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::file::{Entry, Plan, PlanIdentity};
use crate::ca::Stage;
use crate::classify::Action;
use crate::digest::Digest;
use crate::names::IdentityId;
use crate::policy::KeyMode;
use crate::values::quoted;

/// A plan's header, every field of it checked. What `apply` may rotate is decided from its
/// identities (read one at a time, `plan::read`) and the fleet's own judgement; nothing here is
/// used to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidPlan {
    pub(crate) root: PathBuf,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) validity_days: u32,
    pub(crate) keys: KeyMode,
    pub(crate) policy_sha256: Digest,
    pub(crate) ca_sha256: Digest,
    /// The stage of the CA rotation the plan was made in.
    pub(crate) ca_stage: Stage,
    /// During a CA rotation, the digest of the CA trusted beside the active one.
    pub(crate) ca_other_sha256: Option<Digest>,
    /// How many identity entries the header says follow.
    pub(crate) identities: usize,
}

/// What the plan says of one identity's credentials (`None`: the file was absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlannedIdentity {
    pub(crate) cert: Option<Planned>,
    pub(crate) token: Option<Planned>,
}

/// What the plan says of one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Planned {
    pub(crate) action: Action,
    /// The digest of the file as planned; always present for `rotate` and `recover`.
    pub(crate) sha256: Option<Digest>,
}

/// The header of `plan` (its identity entries are not looked at), validated.
pub(crate) fn header(plan: &Plan) -> Result<ValidPlan> {
    let root = PathBuf::from(&plan.root);
    if !root.is_absolute() {
        bail!("root {} is not an absolute path", quoted(&plan.root));
    }
    let as_of = date("as_of", &plan.as_of)?;
    date("ca_not_after", &plan.ca_not_after)?;
    if !(1..=3650).contains(&plan.validity_days) {
        bail!(
            "validity_days {} is outside 1..=3650: the plan was edited; make a new plan",
            plan.validity_days
        );
    }
    let (Some(keys), Some(policy)) = (plan.keys, plan.policy_sha256.as_deref()) else {
        bail!(
            "the plan does not record the policy it was made under (keys, policy_sha256): \
             it was made by an older rekey; make a new plan"
        );
    };
    let policy_sha256 = digest("policy_sha256", policy)?;
    let ca_sha256 = digest("ca_sha256", &plan.ca_sha256)?;
    let (ca_stage, ca_other_sha256) = rotation(plan)?;
    let Some(identities) = plan.identities else {
        bail!(
            "the plan has no identity count: make a new plan with this rekey (its header says \
             how many identities follow, identities = N; an older rekey did not write it)"
        );
    };
    Ok(ValidPlan {
        root,
        as_of,
        validity_days: plan.validity_days,
        keys,
        policy_sha256,
        ca_sha256,
        ca_stage,
        ca_other_sha256,
        identities,
    })
}

/// One identity entry, validated; `at` says where the entry holds a path of fields
/// (`["cert", "sha256"]`; `[]`: the entry itself), for a message.
pub(crate) fn identity(
    i: &PlanIdentity,
    at: impl Fn(&[&str]) -> String,
) -> Result<(IdentityId, PlannedIdentity)> {
    let Some(id) = IdentityId::new(&i.node, &i.service) else {
        // At the line of the name that is not valid (the node's when both are not).
        let field = if crate::names::is_valid(&i.node) {
            "service"
        } else {
            "node"
        };
        bail!(
            "{}: {}/{} is not a valid node/service name",
            at(&[field]),
            quoted(&i.node),
            quoted(&i.service)
        );
    };
    let planned = |kind: &'static str, e: &Option<Entry>| {
        entry(e, &id, kind).map_err(|(field, err)| {
            let path: &[&str] = match field {
                Some(field) => &[kind, field],
                None => &[kind],
            };
            anyhow::anyhow!("{}: {err}", at(path))
        })
    };
    let planned = PlannedIdentity {
        cert: planned("cert", &i.cert)?,
        token: planned("token", &i.token)?,
    };
    Ok((id, planned))
}

/// The CA rotation a plan was made in: its stage, and the other CA's digest, present exactly
/// when a rotation is under way.
fn rotation(plan: &Plan) -> Result<(Stage, Option<Digest>)> {
    let stage = match plan.ca_stage.as_deref() {
        Some("steady") => Stage::Steady,
        Some("begun") => Stage::Begun,
        Some("switched") => Stage::Switched,
        Some(other) => bail!(
            "ca_stage {} is not a CA rotation stage (steady, begun or switched): the plan was \
             edited; make a new plan",
            quoted(other)
        ),
        None => bail!(
            "the plan does not record the stage of the CA rotation it was made in (ca_stage): \
             make a new plan"
        ),
    };
    let other = match (stage, plan.ca_other_sha256.as_deref()) {
        (Stage::Steady, None) => None,
        (Stage::Steady, Some(_)) => bail!(
            "the plan names a second CA (ca_other_sha256) but says ca_stage = \"steady\": the \
             plan was edited; make a new plan"
        ),
        (_, Some(other)) => Some(digest("ca_other_sha256", other)?),
        (_, None) => bail!(
            "the plan says ca_stage = \"{}\" but names no second CA (ca_other_sha256): the plan \
             was edited; make a new plan",
            stage.name()
        ),
    };
    Ok((stage, other))
}

/// What is wrong with an entry, and in which of its fields (`None`: the entry itself).
type Bad = (Option<&'static str>, anyhow::Error);

fn entry(e: &Option<Entry>, id: &IdentityId, kind: &str) -> Result<Option<Planned>, Bad> {
    let Some(e) = e else { return Ok(None) };
    let field = |name: &str| format!("{id} {kind}.{name}");
    for (name, value) in [
        ("not_after", &e.not_after),
        ("new_not_after", &e.new_not_after),
    ] {
        if let Some(v) = value {
            date(&field(name), v).map_err(|err| (Some(name), err))?;
        }
    }
    let sha256 = match &e.sha256 {
        Some(text) => Some(digest(&field("sha256"), text).map_err(|err| (Some("sha256"), err))?),
        None if matches!(e.action, Action::Rotate | Action::Recover) => {
            return Err((
                None,
                anyhow::anyhow!(
                    "{} is missing: a {kind} to rotate needs its digest",
                    field("sha256")
                ),
            ));
        }
        None => None,
    };
    Ok(Some(Planned {
        action: e.action,
        sha256,
    }))
}

fn date(field: &str, text: &str) -> Result<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => bail!("{field} {} is not an RFC 3339 time", quoted(text)),
    }
}

fn digest(field: &str, text: &str) -> Result<Digest> {
    Digest::parse(text).ok_or_else(|| {
        anyhow::anyhow!(
            "{field} {} is not a SHA-256 digest (64 hex digits)",
            quoted(text)
        )
    })
}
