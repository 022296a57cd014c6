//! The lines of a run's report: what became of each identity (its outcome, the credentials it
//! got, its hooks' results) and what is left for a person. Values only; the report that holds
//! them, and the exit code they decide, are in the parent module.

use serde::{Deserialize, Serialize};

use crate::names::IdentityId;
use crate::survey::Stuck;
use crate::write::record::calls::HookResult;
use crate::write::record::entries::FileChange;

/// What became of one identity in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Its files were replaced.
    Done,
    /// Left alone on purpose (the fleet's judgement, a change since the plan), with the reason.
    Skipped,
    /// Something went wrong; it is wholly as it was.
    Failed,
}

/// A pending hook of an earlier run, run again by this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetriedHook {
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(flatten)]
    pub result: HookResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityReport {
    pub node: String,
    pub service: String,
    /// The identity's directory, relative to the root.
    #[serde(default)]
    pub dir: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenChange>,
    /// Its deploy hooks, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookResult>,
}

/// A certificate a run replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertChange {
    pub path: String,
    /// Serial numbers in uppercase hex, as `openssl x509 -serial` prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_serial: Option<String>,
    pub new_serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_not_after: Option<String>,
    pub new_not_after: String,
    /// `rotated` (a new key pair) or `reused`.
    pub key: KeyChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyChange {
    Rotated,
    Reused,
}

/// A token a run replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_exp: Option<String>,
    pub new_exp: String,
}

/// What a staged identity's new credentials are, for its report line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    pub cert: Option<CertChange>,
    pub token: Option<TokenChange>,
}

/// An identity, or a path, left for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedsPerson {
    /// The path relative to the root (`nodes/<node>/<service>`).
    pub dir: String,
    pub state: Stuck,
    pub reason: String,
}

impl IdentityReport {
    /// The identity the line is for, if its names are valid (a report is read back from disk).
    pub fn id(&self) -> Option<IdentityId> {
        IdentityId::new(&self.node, &self.service)
    }
}

/// The identity's directory as a report names it: `nodes/<node>/<service>`.
fn dir_of(id: &IdentityId) -> String {
    id.relative().to_string_lossy().into_owned()
}

impl IdentityReport {
    /// An identity whose files were not replaced, with the reason.
    pub fn unchanged(id: &IdentityId, outcome: Outcome, reason: String) -> Self {
        IdentityReport {
            node: id.node().to_string(),
            service: id.service().to_string(),
            dir: dir_of(id),
            outcome,
            reason,
            files: Vec::new(),
            cert: None,
            token: None,
            hooks: Vec::new(),
        }
    }

    /// An identity whose files were replaced.
    pub fn done(id: &IdentityId, files: Vec<FileChange>, details: Details) -> Self {
        IdentityReport {
            node: id.node().to_string(),
            service: id.service().to_string(),
            dir: dir_of(id),
            outcome: Outcome::Done,
            reason: String::new(),
            files,
            cert: details.cert,
            token: details.token,
            hooks: Vec::new(),
        }
    }
}
