//! The rotation policy (docs/design.md §4): `<root>/rekey.toml` laid over the built-in default for
//! the reference fleet (its `[services]` extend the built-in table unless `builtin_services =
//! false`). Parsed once into [`Policy`], with where it came from ([`Source`]); nothing after this
//! module sees TOML. `policy::shown` prints it back and warns about names that look mistyped.

mod shown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    pub services: BTreeMap<String, Renewal>,
    /// Where every writing run leaves its Prometheus metrics (absolute, or relative to the
    /// root). Absent from the canonical form when unset, so that older digests still hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<String>,
}

/// Where the policy in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No `rekey.toml`: the built-in policy.
    Builtin,
    /// `rekey.toml`, with the SHA-256 of its bytes.
    File { path: PathBuf, sha256: Digest },
}

/// The policy in force, where it came from, and the service names its file wrote.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub policy: Policy,
    pub source: Source,
    /// The names under the file's `[services]` (empty for the built-in policy).
    pub named: Vec<String>,
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
    #[serde(default = "default_builtin_services")]
    builtin_services: bool,
    #[serde(default)]
    services: BTreeMap<String, Renewal>,
    #[serde(default)]
    metrics_file: Option<String>,
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
fn default_builtin_services() -> bool {
    true
}

/// The reference fleet's services: `mocctl` renews nothing, the rest renew their certificates.
fn builtin_services() -> BTreeMap<String, Renewal> {
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
    services
}

impl Policy {
    /// The policy used when the root has no `rekey.toml`: the reference fleet's services.
    pub fn builtin() -> Policy {
        Policy {
            validity_days: default_validity(),
            stalled_below_percent: default_stalled(),
            min_age_hours: default_min_age(),
            keys: default_keys(),
            max_plan_age_hours: default_max_plan_age(),
            services: builtin_services(),
            metrics_file: None,
        }
    }

    /// Parses and validates policy text; the error names the offending field.
    pub fn parse(text: &str) -> Result<Policy> {
        Policy::parse_named(text).map(|(policy, _)| policy)
    }

    /// [`Policy::parse`], also returning the service names the text wrote under `[services]`.
    fn parse_named(text: &str) -> Result<(Policy, Vec<String>)> {
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
        for name in raw.services.keys() {
            if !names::is_valid(name) {
                bail!("service name {name:?} in [services] is not a valid service name");
            }
        }
        if let Some(file) = &raw.metrics_file
            && (file.is_empty() || file.contains('\0'))
        {
            bail!("metrics_file must be a path, not {file:?}");
        }
        let named = raw.services.keys().cloned().collect();
        let mut services = if raw.builtin_services {
            builtin_services()
        } else {
            BTreeMap::new()
        };
        services.extend(raw.services);
        let policy = Policy {
            validity_days: raw.validity_days,
            stalled_below_percent: raw.stalled_below_percent,
            min_age_hours: raw.min_age_hours,
            keys: raw.keys,
            max_plan_age_hours: raw.max_plan_age_hours,
            services,
            metrics_file: raw.metrics_file,
        };
        Ok((policy, named))
    }

    /// Where `metrics_file` points, for the fleet at `root`.
    pub fn metrics_path(&self, root: &Path) -> Option<PathBuf> {
        self.metrics_file.as_ref().map(|f| root.join(f))
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

/// Loads `<root>/rekey.toml` over the built-in default, or the built-in policy when it is absent.
pub fn load(root: &Path) -> Result<Loaded> {
    let path = root.join(FILE_NAME);
    let bytes = match fsio::read_credential(&path) {
        Slot::Absent => {
            return Ok(Loaded {
                policy: Policy::builtin(),
                source: Source::Builtin,
                named: Vec::new(),
            });
        }
        Slot::Present(bytes) => bytes,
        Slot::Unusable(why) => bail!("policy {} {why}", path.display()),
    };
    let sha256 = Digest::of(&bytes);
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("policy {} is not UTF-8 text", path.display()))?;
    let (policy, named) = Policy::parse_named(&text)
        .with_context(|| format!("failed to load policy {}", path.display()))?;
    Ok(Loaded {
        policy,
        source: Source::File { path, sha256 },
        named,
    })
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
        assert_eq!(spelled, builtin, "a file of defaults is the built-in policy");
        assert_ne!(spelled, longer);
        assert_ne!(spelled, reuse);
        let replaced = Policy::parse("version = 1\nbuiltin_services = false")
            .unwrap()
            .digest();
        assert_ne!(replaced, builtin, "an empty service table is another policy");
        let metrics = Policy::parse("version = 1\nmetrics_file = \"m.prom\"")
            .unwrap()
            .digest();
        assert_ne!(metrics, builtin);
    }

    #[test]
    fn a_file_extends_the_builtin_service_table_unless_told_not_to() {
        let renews = |p: &Policy, s: &str| p.renewal(s).self_renews_cert;
        let cases = [
            ("defaults only", "version = 1", 8, true, false),
            (
                "one more service",
                "version = 1\n[services.vault]\nself_renews_cert = true",
                9,
                true,
                true,
            ),
            (
                "a built-in service overridden",
                "version = 1\n[services.kms]\nself_renews_cert = false",
                8,
                false,
                false,
            ),
            (
                "replaced",
                "version = 1\nbuiltin_services = false\n[services.vault]\nself_renews_cert = true",
                1,
                false,
                true,
            ),
        ];
        for (name, text, count, kms, vault) in cases {
            let policy = Policy::parse(text).unwrap();
            assert_eq!(policy.services.len(), count, "{name}");
            assert_eq!(renews(&policy, "kms"), kms, "{name}");
            assert_eq!(renews(&policy, "vault"), vault, "{name}");
        }
        assert_eq!(Policy::parse("version = 1").unwrap(), Policy::builtin());
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
                "zero plan age",
                "version = 1\nmax_plan_age_hours = 0",
                "max_plan_age_hours",
            ),
            (
                "bad service name",
                "version = 1\n[services.\"../x\"]",
                "service name",
            ),
            ("empty metrics file", "version = 1\nmetrics_file = \"\"", "metrics_file"),
            (
                "builtin_services not a boolean",
                "version = 1\nbuiltin_services = \"no\"",
                "builtin_services",
            ),
        ];
        for (name, text, needle) in cases {
            let err = format!("{:#}", Policy::parse(text).unwrap_err());
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
