//! A plan read back for `apply`: parsed once and validated whole before anything is written, into
//! types that cannot hold a bad name, a bad date, a bad digest or the same identity twice. Pure:
//! text in, [`ValidPlan`] or the first thing wrong with it out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use super::file::{Entry, Plan};
use crate::ca::Stage;
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
    /// The stage of the CA rotation the plan was made in.
    pub(crate) ca_stage: Stage,
    /// During a CA rotation, the digest of the CA trusted beside the active one.
    pub(crate) ca_other_sha256: Option<Digest>,
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
        validate(plan, &Where { text })
    }
}

/// Where a plan's values are, to name them in a message: in a TOML plan, `line N` of the value
/// itself (the line a reader's editor goes to), found again only when a message needs it; in a
/// JSON plan, or where the text cannot say, `identity entry N`.
struct Where<'t> {
    text: &'t str,
}

impl Where<'_> {
    /// Where the `n`-th identity entry (from 0) holds `path` (`["cert", "sha256"]`): the line
    /// of that value, else of the nearest part of `path` the entry holds, else of the entry's
    /// `[[identity]]` header.
    fn at(&self, n: usize, path: &[&str]) -> String {
        use crate::values::Step;
        let entry = format!("identity entry {}", n + 1);
        if self.text.trim_start().starts_with('{') {
            return entry;
        }
        let steps: Vec<Step<'_>> = [Step::Key("identity"), Step::Index(n)]
            .into_iter()
            .chain(path.iter().map(|key| Step::Key(key)))
            .collect();
        crate::values::toml_line(self.text, &steps).map_or(entry, |line| format!("line {line}"))
    }
}

fn validate(plan: Plan, lines: &Where<'_>) -> Result<ValidPlan> {
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
    let (ca_stage, ca_other_sha256) = rotation(&plan)?;
    let mut identities: BTreeMap<IdentityId, (usize, PlannedIdentity)> = BTreeMap::new();
    for (n, i) in plan.identity.iter().enumerate() {
        let Some(id) = IdentityId::new(&i.node, &i.service) else {
            bail!(
                "{}: {}/{} is not a valid node/service name",
                lines.at(n, &[]),
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
                anyhow::anyhow!("{}: {err}", lines.at(n, path))
            })
        };
        let planned = PlannedIdentity {
            cert: planned("cert", &i.cert)?,
            token: planned("token", &i.token)?,
        };
        if let Some((first, _)) = identities.get(&id) {
            bail!(
                "{id} is planned twice ({} and {}): a plan names each identity once; make a \
                 new plan",
                lines.at(*first, &[]),
                lines.at(n, &[])
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
            "the plan says identities = {count} but holds {}: it was cut short or edited; make a \
             new plan",
            crate::count::count(plan.identity.len(), "identity entry", "identity entries"),
        );
    }
    Ok(ValidPlan {
        root,
        as_of,
        validity_days: plan.validity_days,
        keys,
        policy_sha256,
        ca_sha256,
        ca_stage,
        ca_other_sha256,
        identities: identities.into_iter().map(|(id, (_, p))| (id, p)).collect(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn plan(identities: &str) -> String {
        let n = identities.matches("[[identity]]").count();
        format!(
            "version = 2\nroot = \"/fleet\"\nas_of = \"2026-11-28T00:00:00Z\"\nvalidity_days = 90\n\
             keys = \"rotate\"\npolicy_sha256 = \"{SHA}\"\nca_sha256 = \"{SHA}\"\n\
             ca_not_after = \"2030-01-01T00:00:00Z\"\nca_stage = \"steady\"\nidentities = {n}\n{identities}"
        )
    }

    fn block(node: &str, action: &str) -> String {
        format!(
            "\n[[identity]]\nnode = \"{node}\"\nservice = \"kms\"\n\
             cert = {{ action = \"{action}\", reason = \"r\", sha256 = \"{SHA}\" }}\n"
        )
    }

    #[test]
    fn a_plan_made_during_a_ca_rotation_keeps_its_stage_and_second_ca() {
        let text = plan("").replace(
            "\"steady\"",
            &format!("\"switched\"\nca_other_sha256 = \"{SHA}\""),
        );
        let valid = ValidPlan::parse(&text).unwrap();
        assert_eq!(valid.ca_stage, Stage::Switched);
        assert_eq!(
            valid.ca_other_sha256.map(|d| d.hex()),
            Some(SHA.to_string())
        );
        let steady = ValidPlan::parse(&plan("")).unwrap();
        assert_eq!(
            (steady.ca_stage, steady.ca_other_sha256),
            (Stage::Steady, None)
        );
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
                "n1/kms is planned twice (line 12 and line 17)",
            ),
            (
                "a bad digest names its own line, not its entry's",
                plan(&format!("{}{}", block("n1", "rotate"), block("n2", "rotate")))
                    .replace(
                        &format!("\"n2\"\nservice = \"kms\"\ncert = {{ action = \"rotate\", reason = \"r\", sha256 = \"{SHA}\""),
                        "\"n2\"\nservice = \"kms\"\ncert = { action = \"rotate\", reason = \"r\", sha256 = \"00\"",
                    ),
                "line 20: n2/kms cert.sha256 \"00\" is not a SHA-256 digest",
            ),
            (
                "a bad date in a table of its own names its line",
                plan(
                    "\n[[identity]]\nnode = \"n1\"\nservice = \"kms\"\n\n[identity.cert]\n\
                     action = \"keep\"\nreason = \"r\"\n\nnot_after = \"soon\"\n",
                ),
                "line 20: n1/kms cert.not_after \"soon\" is not an RFC 3339 time",
            ),
            (
                "a missing digest names the entry's table",
                plan(&block("n1", "rotate")).replace(&format!(", sha256 = \"{SHA}\""), ""),
                "line 15: n1/kms cert.sha256 is missing",
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
                "no CA rotation stage",
                plan("").replace("ca_stage", "# ca_stage"),
                "does not record the stage of the CA rotation",
            ),
            (
                "an unknown CA rotation stage",
                plan("").replace("\"steady\"", "\"paused\""),
                "ca_stage \"paused\" is not a CA rotation stage",
            ),
            (
                "a second CA in a steady fleet",
                plan("").replace("ca_stage", &format!("ca_other_sha256 = \"{SHA}\"\nca_stage")),
                "names a second CA (ca_other_sha256) but says ca_stage = \"steady\"",
            ),
            (
                "a rotation without its second CA",
                plan("").replace("\"steady\"", "\"switched\""),
                "says ca_stage = \"switched\" but names no second CA",
            ),
            (
                "a bad second CA digest",
                plan("").replace("\"steady\"", "\"begun\"\nca_other_sha256 = \"00\""),
                "ca_other_sha256 \"00\" is not a SHA-256 digest",
            ),
            (
                "a plan of version 1",
                plan("").replace("version = 2", "version = 1"),
                "plan version 1 was made by an older rekey",
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
