//! The lines of a run's report: what became of each identity (its outcome, the credentials it
//! got, its hooks' results) and what is left for a person. Values only; the report that holds
//! them, and the exit code they decide, are in the parent module.

use serde::{Deserialize, Serialize};

use crate::aside::Aside;
use crate::names::IdentityId;
use crate::survey::Stuck;
use crate::write::record::calls::{HookResult, HookStatus};
use crate::write::record::entries::{FileChange, LeftAs};

/// What became of one identity in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Its files were replaced.
    Done,
    /// Left alone on purpose (the fleet's judgement, a change since the plan), with the reason.
    Skipped,
    /// Something went wrong; it is wholly as it was.
    Failed,
}

impl From<LeftAs> for Outcome {
    fn from(left: LeftAs) -> Outcome {
        match left {
            LeftAs::Skipped => Outcome::Skipped,
            LeftAs::Failed => Outcome::Failed,
        }
    }
}

/// A pending hook of an earlier run, run again by this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetriedHook {
    pub(crate) run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<String>,
    #[serde(flatten)]
    pub(crate) result: HookResult,
}

/// The pending hooks of earlier runs that a run ran first, set aside as they ran (a fleet whose
/// every deploy hook failed leaves one per identity to run again), and how many failed again.
#[derive(Debug)]
pub(crate) struct RetriedHooks {
    list: Aside<RetriedHook>,
    failed: usize,
}

impl Default for RetriedHooks {
    fn default() -> RetriedHooks {
        RetriedHooks {
            list: Aside::new(None, 256),
            failed: 0,
        }
    }
}

impl RetriedHooks {
    pub(crate) fn push(&mut self, hook: RetriedHook) {
        if hook.result.status != HookStatus::Ok {
            self.failed += 1;
        }
        self.list.push(hook);
    }

    /// Makes every hook pushed readable ([`RetriedHooks::read`]).
    pub(crate) fn close(&mut self) {
        self.list.flush();
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many failed or timed out: they stay pending.
    pub(crate) fn failed(&self) -> usize {
        self.failed
    }

    /// Each hook, in the order it ran (after [`RetriedHooks::close`]).
    pub(crate) fn read(&self) -> impl Iterator<Item = std::io::Result<RetriedHook>> + '_ {
        self.list.read()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityReport {
    pub(crate) node: String,
    pub(crate) service: String,
    /// The identity's directory, relative to the root.
    #[serde(default)]
    pub(crate) dir: String,
    pub(crate) outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) files: Vec<FileChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<CertChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<TokenChange>,
    /// Its deploy hooks, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) hooks: Vec<HookResult>,
}

/// A certificate a run replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertChange {
    pub(crate) path: String,
    /// Serial numbers in uppercase hex, as `openssl x509 -serial` prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) old_serial: Option<String>,
    pub(crate) new_serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) old_not_after: Option<String>,
    pub(crate) new_not_after: String,
    /// `rotated` (a new key pair) or `reused`.
    pub(crate) key: KeyChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyChange {
    Rotated,
    Reused,
}

/// A token a run replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenChange {
    pub(crate) path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) old_exp: Option<String>,
    pub(crate) new_exp: String,
}

/// What a staged identity's new credentials are, for its report line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Details {
    pub(crate) cert: Option<CertChange>,
    pub(crate) token: Option<TokenChange>,
    /// Why a credential the run was asked about was left as it was (empty: none was).
    pub(crate) reason: String,
}

/// An identity, or a path, left for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NeedsPerson {
    /// The path relative to the root (`nodes/<node>/<service>`, or the path of a fleet issue).
    pub(crate) dir: String,
    pub(crate) state: Stuck,
    pub(crate) reason: String,
    /// A fleet issue: a path under `nodes/` that is not an identity (counted in
    /// `counts.fleet_issues`, never in `counts.problems`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) fleet_issue: bool,
}

impl IdentityReport {
    /// The identity the line is for, if its names are valid (a report is read back from disk).
    pub(crate) fn id(&self) -> Option<IdentityId> {
        IdentityId::new(&self.node, &self.service)
    }
}

/// The identity's directory as a report names it: `nodes/<node>/<service>`.
fn dir_of(id: &IdentityId) -> String {
    id.relative().to_string_lossy().into_owned()
}

impl IdentityReport {
    /// An identity whose files were not replaced, with the reason.
    pub(crate) fn unchanged(id: &IdentityId, outcome: Outcome, reason: String) -> Self {
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

    /// An identity a batch left as it was before staging it, as its journal says (a replay).
    pub(crate) fn untouched(u: &crate::write::record::entries::Untouched) -> Self {
        Self::unchanged(&u.id, u.left.into(), u.reason.clone())
    }

    /// An identity whose files were replaced.
    pub(crate) fn done(id: &IdentityId, files: Vec<FileChange>, details: Details) -> Self {
        IdentityReport {
            node: id.node().to_string(),
            service: id.service().to_string(),
            dir: dir_of(id),
            outcome: Outcome::Done,
            reason: details.reason,
            files,
            cert: details.cert,
            token: details.token,
            hooks: Vec::new(),
        }
    }
}
