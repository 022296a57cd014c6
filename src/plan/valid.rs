//! A plan read back for `apply`: parsed once and validated whole before anything is written, into
//! types that cannot hold a bad name, a bad date, a bad digest or the same identity twice. Pure:
//! text in, [`ValidPlan`] or the first thing wrong with it out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use super::file::{Entry, Plan};
use crate::classify::Action;
use crate::digest::Digest;
use crate::names::IdentityId;
use crate::policy::KeyMode;
use crate::values::quoted;

/// A plan every field of which was checked. What `apply` may rotate is decided from this and the
/// fleet's own judgement; nothing here is used to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidPlan {
    pub(crate) root: PathBuf,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) validity_days: u32,
    pub(crate) keys: KeyMode,
    pub(crate) policy_sha256: Digest,
    pub(crate) ca_sha256: Digest,
    /// One entry per identity, at most: duplicates are refused when parsing.
    pub(crate) identities: BTreeMap<IdentityId, PlannedIdentity>,
}

/// What the plan says of one identity's credentials (`None`: the file was absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlannedIdentity {
    pub(crate) cert: Option<Planned>,
    pub(crate) token: Option<Planned>,
}

/// What the plan says of one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) action: Action,
    /// The digest of the file as planned; always present for `rotate` and `recover`.
    pub(crate) sha256: Option<Digest>,
}

impl ValidPlan {
    /// Parses plan text (TOML, or JSON when it starts with `{`) and validates all of it.
    pub(crate) fn parse(text: &str) -> Result<ValidPlan> {
        let plan = Plan::parse(text)?;
        let lines = identity_lines(text, plan.identity.len());
        validate(plan, &lines)
    }
}

/// Where each `[[identity]]` entry starts, to name it in a message: "line N" in a TOML plan
/// (when the headers can be counted), "entry N" otherwise.
fn identity_lines(text: &str, count: usize) -> Vec<String> {
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[identity]]")
        .map(|(i, _)| i + 1)
        .collect();
    if headers.len() == count && !text.trim_start().starts_with('{') {
        headers.iter().map(|n| format!("line {n}")).collect()
    } else {
        (1..=count).map(|n| format!("identity entry {n}")).collect()
    }
}

fn validate(plan: Plan, lines: &[String]) -> Result<ValidPlan> {
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
    let mut identities: BTreeMap<IdentityId, (usize, PlannedIdentity)> = BTreeMap::new();
    for (n, i) in plan.identity.iter().enumerate() {
        let at = &lines[n];
        let Some(id) = IdentityId::new(&i.node, &i.service) else {
            bail!(
                "{at}: {}/{} is not a valid node/service name",
                quoted(&i.node),
                quoted(&i.service)
            );
        };
        let planned = PlannedIdentity {
            cert: entry(&i.cert, at, &id, "cert")?,
            token: entry(&i.token, at, &id, "token")?,
        };
        if let Some((first, _)) = identities.get(&id) {
            bail!(
                "{id} is planned twice ({} and {at}): a plan names each identity once; make a \
                 new plan",
                lines[*first]
            );
        }
        identities.insert(id, (n, planned));
    }
    let Some(count) = plan.identities else {
        bail!(
            "the plan has no identity count: make a new plan with this rekey (its header says \
             how many identities follow, identities = N; an older rekey did not write it)"
        );
    };
    if count != plan.identity.len() {
        bail!(
            "the plan says identities = {count} but holds {} identity {}: it was cut short or \
             edited; make a new plan",
            plan.identity.len(),
            if plan.identity.len() == 1 {
                "entry"
            } else {
                "entries"
            }
        );
    }
    Ok(ValidPlan {
        root,
        as_of,
        validity_days: plan.validity_days,
        keys,
        policy_sha256,
        ca_sha256,
        identities: identities.into_iter().map(|(id, (_, p))| (id, p)).collect(),
    })
}

fn entry(e: &Option<Entry>, at: &str, id: &IdentityId, kind: &str) -> Result<Option<Planned>> {
    let Some(e) = e else { return Ok(None) };
    let field = |name: &str| format!("{at}: {id} {kind}.{name}");
    for (name, value) in [
        ("not_after", &e.not_after),
        ("new_not_after", &e.new_not_after),
    ] {
        if let Some(v) = value {
            date(&field(name), v)?;
        }
    }
    let sha256 = match &e.sha256 {
        Some(text) => Some(digest(&field("sha256"), text)?),
        None if matches!(e.action, Action::Rotate | Action::Recover) => {
            bail!(
                "{} is missing: a {kind} to rotate needs its digest",
                field("sha256")
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn plan(identities: &str) -> String {
        let n = identities.matches("[[identity]]").count();
        format!(
            "version = 1\nroot = \"/fleet\"\nas_of = \"2026-11-28T00:00:00Z\"\nvalidity_days = 90\n\
             keys = \"rotate\"\npolicy_sha256 = \"{SHA}\"\nca_sha256 = \"{SHA}\"\n\
             ca_not_after = \"2030-01-01T00:00:00Z\"\nidentities = {n}\n{identities}"
        )
    }

    fn block(node: &str, action: &str) -> String {
        format!(
            "\n[[identity]]\nnode = \"{node}\"\nservice = \"kms\"\n\
             cert = {{ action = \"{action}\", reason = \"r\", sha256 = \"{SHA}\" }}\n"
        )
    }

    #[test]
    fn a_valid_plan_is_keyed_by_identity() {
        let text = plan(&format!("{}{}", block("n2", "keep"), block("n1", "rotate")));
        let valid = ValidPlan::parse(&text).unwrap();
        let ids: Vec<String> = valid.identities.keys().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["n1/kms", "n2/kms"]);
    }

    #[test]
    fn refuses_plans_naming_what_is_wrong() {
        let twice = plan(&format!("{}{}", block("n1", "rotate"), block("n1", "keep")));
        let cases = [
            (
                "duplicate identity, both lines named",
                twice,
                "n1/kms is planned twice (line 11 and line 16)",
            ),
            (
                "bad name",
                plan(&block("../x", "rotate")),
                "is not a valid node/service name",
            ),
            (
                "relative root",
                plan("").replace("\"/fleet\"", "\"fleet\""),
                "is not an absolute path",
            ),
            (
                "bad as_of",
                plan("").replace("2026-11-28T00:00:00Z", "yesterday"),
                "as_of \"yesterday\" is not an RFC 3339 time",
            ),
            (
                "bad digest",
                plan(&block("n1", "rotate"))
                    .replace(&format!("sha256 = \"{SHA}\" }}"), "sha256 = \"00\" }"),
                "n1/kms cert.sha256 \"00\" is not a SHA-256 digest",
            ),
            (
                "rotate without digest",
                plan(&block("n1", "rotate")).replace(&format!(", sha256 = \"{SHA}\""), ""),
                "cert.sha256 is missing",
            ),
            (
                "no policy digest (an older plan)",
                plan("").replace("policy_sha256", "# policy_sha256"),
                "does not record the policy",
            ),
            (
                "absurd validity",
                plan("").replace("validity_days = 90", "validity_days = 0"),
                "validity_days 0 is outside",
            ),
            ("unknown action", plan(&block("n1", "revive")), "revive"),
            (
                "cut at an identity's boundary",
                plan(&format!(
                    "{}{}",
                    block("n1", "rotate"),
                    block("n2", "rotate")
                ))
                .replace(&block("n2", "rotate"), ""),
                "the plan says identities = 2 but holds 1 identity entry",
            ),
            (
                "no identity count",
                plan(&block("n1", "rotate")).replace("identities = 1\n", ""),
                "has no identity count",
            ),
            (
                "a long name is quoted in part",
                plan(&block(&"x".repeat(100_000), "rotate")),
                "xxx…\"/\"kms\" is not a valid node/service name",
            ),
            (
                "a long line in a parse error is quoted in part",
                plan(&format!("\nbad = {}\n", "y".repeat(100_000))),
                "yyy…",
            ),
        ];
        for (name, text, needle) in cases {
            let err = format!("{:#}", ValidPlan::parse(&text).unwrap_err());
            assert!(err.contains(needle), "{name}: {err}");
            assert!(err.len() < 1000, "{name}: a short message: {err}");
        }
    }
}
