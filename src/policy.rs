//! The rotation policy (DESIGN §4): `<root>/rekey.toml`, or the built-in default for the
//! reference fleet. Parsed once into [`Policy`]; nothing after this module sees TOML.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::TimeDelta;
use serde::Deserialize;

use crate::fsio::{self, Slot};
use crate::names;

/// The policy file's name inside the fleet root.
pub const FILE_NAME: &str = "rekey.toml";

/// What to do with the key pair when a certificate is reissued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// A new key pair of the same algorithm, when `key.pem` is present.
    Rotate,
    /// Keep the existing public key.
    Reuse,
}

/// Which credentials a service renews by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    #[serde(default)]
    pub self_renews_cert: bool,
    #[serde(default)]
    pub self_rotates_token: bool,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub validity_days: u32,
    pub stalled_below_percent: u32,
    pub min_age_hours: u32,
    pub keys: KeyMode,
    pub services: BTreeMap<String, Renewal>,
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
    #[serde(default)]
    services: BTreeMap<String, Renewal>,
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
            services,
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
            services: raw.services,
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
