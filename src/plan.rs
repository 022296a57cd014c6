//! The plan (DESIGN §5): the dry-run report that `apply` executes. Built from a survey, rendered
//! as TOML (by hand, so that each credential is one inline table as the contract shows) or JSON,
//! and parsed back with unknown fields refused. Deterministic: same survey, same bytes. No secret
//! is ever in it: actions, reasons, dates and digests only.

use serde::{Deserialize, Serialize};

use crate::classify::{Action, stamp};
use crate::survey::{Assessed, Survey};

/// The plan format version this rekey writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    pub root: String,
    pub as_of: String,
    pub validity_days: u32,
    pub ca_sha256: String,
    pub ca_not_after: String,
    #[serde(default)]
    pub identity: Vec<PlanIdentity>,
    /// Paths under the root that are not identities but were reported (links, bad names).
    #[serde(default)]
    pub issue: Vec<PlanIssue>,
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
    pub reason: String,
    /// The credential's current expiry, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
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
    pub path: String,
    pub reason: String,
}

impl Plan {
    pub fn from_survey(survey: &Survey) -> Plan {
        let ctx = survey.context();
        let new_not_after = stamp(ctx.new_not_after());
        let entry = |c: &Assessed| {
            let action = c.verdict.state.action();
            Entry {
                action,
                reason: c.verdict.reason.clone(),
                not_after: c.window.map(|w| stamp(w.not_after)),
                new_not_after: matches!(action, Action::Rotate | Action::Recover)
                    .then(|| new_not_after.clone()),
                sha256: c.sha256.map(hex::encode),
            }
        };
        Plan {
            version: VERSION,
            root: survey.root.to_string_lossy().into_owned(),
            as_of: stamp(survey.as_of),
            validity_days: survey.policy.validity_days,
            ca_sha256: survey.ca.sha256.clone(),
            ca_not_after: stamp(survey.ca.not_after),
            identity: survey
                .identities
                .iter()
                .map(|i| PlanIdentity {
                    node: i.node.clone(),
                    service: i.service.clone(),
                    cert: i.cert.as_ref().map(entry),
                    token: i.token.as_ref().map(entry),
                })
                .collect(),
            issue: survey
                .issues
                .iter()
                .filter(|i| i.is_problem)
                .map(|i| PlanIssue {
                    path: i.path.clone(),
                    reason: i.message.clone(),
                })
                .collect(),
        }
    }

    /// The plan as TOML, one inline table per credential.
    pub fn to_toml(&self) -> String {
        let mut out = String::with_capacity(256 + self.identity.len() * 400);
        out.push_str(&format!("version = {}\n", self.version));
        out.push_str(&format!("root = {}\n", quote(&self.root)));
        out.push_str(&format!("as_of = {}\n", quote(&self.as_of)));
        out.push_str(&format!("validity_days = {}\n", self.validity_days));
        out.push_str(&format!("ca_sha256 = {}\n", quote(&self.ca_sha256)));
        out.push_str(&format!("ca_not_after = {}\n", quote(&self.ca_not_after)));
        for i in &self.identity {
            out.push_str("\n[[identity]]\n");
            out.push_str(&format!("node = {}\n", quote(&i.node)));
            out.push_str(&format!("service = {}\n", quote(&i.service)));
            for (key, entry) in [("cert", &i.cert), ("token", &i.token)] {
                if let Some(e) = entry {
                    out.push_str(&format!("{key} = {}\n", inline(e)));
                }
            }
        }
        for issue in &self.issue {
            out.push_str("\n[[issue]]\n");
            out.push_str(&format!("path = {}\n", quote(&issue.path)));
            out.push_str(&format!("reason = {}\n", quote(&issue.reason)));
        }
        out
    }

    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("a plan always serializes to JSON");
        text.push('\n');
        text
    }

    /// Parses a plan in either format (JSON when it starts with `{`), refusing other versions.
    pub fn parse(text: &str) -> anyhow::Result<Plan> {
        let plan: Plan = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)?
        } else {
            toml::from_str(text)?
        };
        if plan.version != VERSION {
            anyhow::bail!(
                "plan version {} is not supported (this rekey reads version {VERSION})",
                plan.version
            );
        }
        Ok(plan)
    }
}

fn inline(e: &Entry) -> String {
    let action = match e.action {
        Action::Keep => "keep",
        Action::Rotate => "rotate",
        Action::Recover => "recover",
        Action::Skip => "skip",
    };
    let mut fields = vec![
        format!("action = {}", quote(action)),
        format!("reason = {}", quote(&e.reason)),
    ];
    for (key, value) in [
        ("not_after", &e.not_after),
        ("new_not_after", &e.new_not_after),
        ("sha256", &e.sha256),
    ] {
        if let Some(v) = value {
            fields.push(format!("{key} = {}", quote(v)));
        }
    }
    format!("{{ {} }}", fields.join(", "))
}

/// A TOML basic string. JSON string escaping is a subset of TOML's, so serde_json does the work.
fn quote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string always serializes");
    json.replace('\u{7f}', "\\u007F")
}
