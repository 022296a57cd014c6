//! The rotation policy (docs/design.md §4): `<root>/rekey.toml`, or the built-in default for the
//! reference fleet. Parsed once into [`Policy`]; nothing after this module sees TOML.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

use crate::fsio::{self, Slot};
use crate::names;

/// The policy file's name inside the fleet root.
pub const FILE_NAME: &str = "rekey.toml";

/// What to do with the key pair when a certificate is reissued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// A new key pair of the same algorithm, when `key.pem` is present.
    Rotate,
    /// Keep the existing public key.
    Reuse,
}

/// Which credentials a service renews by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    #[serde(default)]
    pub self_renews_cert: bool,
    #[serde(default)]
    pub self_rotates_token: bool,
}

/// A validated policy. Its serialized form is canonical (fields in a fixed order, services
/// sorted): [`Policy::digest`] names the policy in force, whatever file spelled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub validity_days: u32,
    pub stalled_below_percent: u32,
    pub min_age_hours: u32,
    pub keys: KeyMode,
    /// `apply` refuses a plan older than this.
    pub max_plan_age_hours: u32,
    /// Backups of the newest this many runs are kept; older ones are pruned.
    pub keep_runs: u32,
    /// How long one hook may run before its whole process group is killed.
    pub hook_timeout_seconds: u32,
    pub services: BTreeMap<String, Renewal>,
    /// Per service, the shell command that reloads it after its credentials were rotated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reload: BTreeMap<String, String>,
}

/// A `[services.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    self_renews_cert: bool,
    #[serde(default)]
    self_rotates_token: bool,
    #[serde(default)]
    reload: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default = "default_validity")]
    validity_days: u32,
    #[serde(default = "default_stalled")]
    stalled_below_percent: u32,
    #[serde(default = "default_min_age")]
    min_age_hours: u32,
    #[serde(default = "default_keys")]
    keys: KeyMode,
    #[serde(default = "default_max_plan_age")]
    max_plan_age_hours: u32,
    #[serde(default = "default_keep_runs")]
    keep_runs: u32,
    #[serde(default = "default_hook_timeout")]
    hook_timeout_seconds: u32,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
}

fn default_validity() -> u32 {
    90
}
fn default_stalled() -> u32 {
    25
}
fn default_min_age() -> u32 {
    24
}
fn default_keys() -> KeyMode {
    KeyMode::Rotate
}
fn default_max_plan_age() -> u32 {
    168
}
fn default_keep_runs() -> u32 {
    12
}
fn default_hook_timeout() -> u32 {
    120
}

impl Policy {
    /// The policy used when the root has no `rekey.toml`: the reference fleet's services.
    pub fn builtin() -> Policy {
        let mut services = BTreeMap::new();
        services.insert("mocctl".to_string(), Renewal::default());
        for name in [
            "nodeagent",
            "kva",
            "kms",
            "caph",
            "cloud-operator",
            "cert-manager",
            "csi",
        ] {
            let renewal = Renewal {
                self_renews_cert: true,
                self_rotates_token: false,
            };
            services.insert(name.to_string(), renewal);
        }
        Policy {
            validity_days: default_validity(),
            stalled_below_percent: default_stalled(),
            min_age_hours: default_min_age(),
            keys: default_keys(),
            max_plan_age_hours: default_max_plan_age(),
            keep_runs: default_keep_runs(),
            hook_timeout_seconds: default_hook_timeout(),
            services,
            reload: BTreeMap::new(),
        }
    }

    /// Parses and validates policy text; the error names the offending field.
    pub fn parse(text: &str) -> Result<Policy> {
        let raw: RawPolicy = toml::from_str(text).context("invalid policy")?;
        if raw.version != 1 {
            bail!(
                "policy version {} is not supported (this rekey reads version 1)",
                raw.version
            );
        }
        if !(1..=3650).contains(&raw.validity_days) {
            bail!(
                "validity_days must be between 1 and 3650, not {}",
                raw.validity_days
            );
        }
        if !(1..=99).contains(&raw.stalled_below_percent) {
            bail!(
                "stalled_below_percent must be between 1 and 99, not {}",
                raw.stalled_below_percent
            );
        }
        if raw.min_age_hours >= raw.validity_days.saturating_mul(24) {
            bail!(
                "min_age_hours ({}) must be shorter than validity_days",
                raw.min_age_hours
            );
        }
        if !(1..=8760).contains(&raw.max_plan_age_hours) {
            bail!(
                "max_plan_age_hours must be between 1 and 8760, not {}",
                raw.max_plan_age_hours
            );
        }
        if !(1..=10_000).contains(&raw.keep_runs) {
            bail!(
                "keep_runs must be between 1 and 10000, not {}",
                raw.keep_runs
            );
        }
        if !(1..=86_400).contains(&raw.hook_timeout_seconds) {
            bail!(
                "hook_timeout_seconds must be between 1 and 86400, not {}",
                raw.hook_timeout_seconds
            );
        }
        for (name, service) in &raw.services {
            if service.reload.as_deref().is_some_and(|r| r.trim().is_empty()) {
                bail!("[services.{name}] reload is empty: give the command that reloads it, or remove it");
            }
        }
        for name in raw.services.keys() {
            if !names::is_valid(name) {
                bail!("service name {name:?} in [services] is not a valid service name");
            }
        }
        Ok(Policy {
            validity_days: raw.validity_days,
            stalled_below_percent: raw.stalled_below_percent,
            min_age_hours: raw.min_age_hours,
            keys: raw.keys,
            max_plan_age_hours: raw.max_plan_age_hours,
            keep_runs: raw.keep_runs,
            hook_timeout_seconds: raw.hook_timeout_seconds,
            reload: raw
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.reload.clone()?)))
                .collect(),
            services: raw
                .services
                .into_iter()
                .map(|(name, s)| {
                    let renewal = Renewal {
                        self_renews_cert: s.self_renews_cert,
                        self_rotates_token: s.self_rotates_token,
                    };
                    (name, renewal)
                })
                .collect(),
        })
    }

    /// Loads `<root>/rekey.toml`, or the built-in default when it is absent.
    pub fn load(root: &Path) -> Result<Policy> {
        let path = root.join(FILE_NAME);
        let bytes = match fsio::read_credential(&path) {
            Slot::Absent => return Ok(Policy::builtin()),
            Slot::Present(bytes) => bytes,
            Slot::Unusable(why) => bail!("policy {} {why}", path.display()),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("policy {} is not UTF-8 text", path.display()))?;
        Policy::parse(&text).with_context(|| format!("failed to load policy {}", path.display()))
    }

    pub fn renewal(&self, service: &str) -> Renewal {
        self.services.get(service).copied().unwrap_or_default()
    }

    pub fn validity(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.validity_days))
    }

    pub fn min_age(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.min_age_hours))
    }

    pub fn max_plan_age(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.max_plan_age_hours))
    }

    /// The digest of the policy's canonical form (the plan's `policy_sha256`).
    pub fn digest(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).expect("a policy always serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
version = 1
validity_days = 90
stalled_below_percent = 25
min_age_hours = 24
keys = "rotate"

[services.nodeagent]
self_renews_cert = true
self_rotates_token = false
"#;
        let policy = Policy::parse(text).unwrap();
        assert!(policy.renewal("nodeagent").self_renews_cert);
        assert_eq!(policy.renewal("unlisted"), Renewal::default());
        assert_eq!(policy.keys, KeyMode::Rotate);
        assert_eq!(policy.max_plan_age_hours, 168);
    }

    #[test]
    fn the_digest_names_the_policy_in_force_not_its_spelling() {
        let builtin = Policy::builtin().digest();
        let spelled = Policy::parse("version = 1\n\n# same as the default\nkeys = \"rotate\"\n")
            .unwrap()
            .digest();
        let longer = Policy::parse("version = 1\nvalidity_days = 91")
            .unwrap()
            .digest();
        let reuse = Policy::parse("version = 1\nkeys = \"reuse\"")
            .unwrap()
            .digest();
        assert_eq!(spelled, Policy::parse("version = 1").unwrap().digest());
        assert_ne!(spelled, builtin, "the built-in policy lists services");
        assert_ne!(spelled, longer);
        assert_ne!(spelled, reuse);
    }

    #[test]
    fn rejects_bad_policies_naming_the_field() {
        let cases = [
            (
                "unknown top-level field",
                "version = 1\nvalidty_days = 90",
                "validty_days",
            ),
            (
                "unknown service field",
                "version = 1\n[services.kms]\nrenews = true",
                "renews",
            ),
            (
                "wrong type",
                "version = 1\nvalidity_days = \"90\"",
                "validity_days",
            ),
            (
                "negative",
                "version = 1\nmin_age_hours = -1",
                "min_age_hours",
            ),
            (
                "zero validity",
                "version = 1\nvalidity_days = 0",
                "validity_days",
            ),
            ("newer version", "version = 2", "version 2"),
            ("missing version", "validity_days = 90", "version"),
            ("bad keys", "version = 1\nkeys = \"keep\"", "keys"),
            (
                "reload not a string",
                "version = 1\n[services.kms]\nreload = 1",
                "reload",
            ),
            (
                "empty reload",
                "version = 1\n[services.kms]\nreload = \"  \"",
                "[services.kms] reload is empty",
            ),
            (
                "zero plan age",
                "version = 1\nmax_plan_age_hours = 0",
                "max_plan_age_hours",
            ),
            (
                "bad service name",
                "version = 1\n[services.\"../x\"]",
                "service name",
            ),
        ];
        for (name, text, needle) in cases {
            let err = format!("{:#}", Policy::parse(text).unwrap_err());
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
