//! What a plan file holds (docs/design.md §5), field by field as serde writes and reads it, with
//! unknown fields refused, and the plan parsed back from either format with its version checked.
//!
//! The schema only: building a plan from a survey and rendering it are `plan`'s, validating one
//! for `apply` is `plan::valid`'s. This module imports neither.

use serde::{Deserialize, Serialize};

use crate::classify::Action;
use crate::policy::KeyMode;
use crate::values::clip;

/// The plan format version this rekey writes and reads.
/// Version 2 added `ca_stage` and `ca_other_sha256` (docs/design.md §5, "Plan format"); a
/// version-1 plan does not say in which stage of a CA rotation it was made, and is refused.
pub const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub(crate) version: u32,
    pub(crate) root: String,
    pub as_of: String,
    /// For the reviewer: the validity the fleet's policy gives (never used to issue).
    pub validity_days: u32,
    /// For the reviewer: what happens to key pairs (never used to issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keys: Option<KeyMode>,
    /// The digest of the policy the plan was made under; `apply` refuses another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_sha256: Option<String>,
    pub(crate) ca_sha256: String,
    pub(crate) ca_not_after: String,
    /// The stage of the fleet's CA rotation the plan was made in: `steady`, `begun` or
    /// `switched`; `apply` refuses the plan in another stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_stage: Option<String>,
    /// During a CA rotation, SHA-256 of the certificate of the CA trusted beside the active one
    /// (`ca/next/ca.crt` when begun, `ca/previous/ca.crt` when switched); absent when steady.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_other_sha256: Option<String>,
    /// How many `identity` entries follow: a plan cut short at an entry's boundary still parses,
    /// and is refused because this count disagrees. Required by `apply` (absent only from plans
    /// of an older rekey, which it refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) identities: Option<usize>,
    #[serde(default)]
    pub identity: Vec<PlanIdentity>,
    /// Paths under the root that are not identities but were reported (links, bad names).
    #[serde(default)]
    pub(crate) issue: Vec<PlanIssue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanIdentity {
    pub node: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub action: Action,
    pub(crate) reason: String,
    /// The credential's current expiry, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) not_after: Option<String>,
    /// The expiry a rotation gives it (rotate and recover only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_not_after: Option<String>,
    /// SHA-256 of the file as planned, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanIssue {
    pub(crate) path: String,
    pub(crate) reason: String,
}

impl Plan {
    /// Parses a plan in either format (JSON when it starts with `{`), refusing other versions.
    /// A parser's message quotes at most [`QUOTED_MAX`](crate::values::QUOTED_MAX) bytes of a
    /// line of the plan.
    pub fn parse(text: &str) -> anyhow::Result<Plan> {
        let plan: Plan = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!(clip(&e.to_string())))?
        } else {
            toml::from_str(text).map_err(|e| anyhow::anyhow!(clip(&e.to_string())))?
        };
        plan.check_version()?;
        Ok(plan)
    }

    /// Refuses a plan of another version than this rekey reads.
    pub(crate) fn check_version(&self) -> anyhow::Result<()> {
        if self.version == 1 {
            anyhow::bail!(
                "plan version 1 was made by an older rekey and does not record the stage of the \
                 CA rotation it was made in (ca_stage): make a new plan with this rekey"
            );
        }
        if self.version != VERSION {
            anyhow::bail!(
                "plan version {} is not supported (this rekey reads version {VERSION})",
                self.version
            );
        }
        Ok(())
    }
}
