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
use crate::problem::Problem;

/// The policy file's name inside the fleet root.
pub(crate) const FILE_NAME: &str = "rekey.toml";

/// What to do with the key pair when a certificate is reissued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyMode {
    /// A new key pair of the same algorithm, when `key.pem` is present.
    Rotate,
    /// Keep the existing public key.
    Reuse,
}

/// Which credentials a service renews by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Renewal {
    pub(crate) self_renews_cert: bool,
    pub(crate) self_rotates_token: bool,
}

/// A service's entry in `[services]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Service {
    pub(crate) self_renews_cert: bool,
    pub(crate) self_rotates_token: bool,
    /// The subject CN its certificates must have; overrides the policy's own. Absent from the
    /// canonical form when unset, so that a policy without it keeps its digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject_cn: Option<SubjectCn>,
    /// The shell command that reloads the service after its credentials changed (a deploy
    /// hook); absent from the canonical form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reload: Option<String>,
}

/// A `subject_cn` pattern (docs/design.md §4): text in which `{node}` and `{service}` stand for
/// the identity's directory names; non-empty, with no other brace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct SubjectCn(String);

impl SubjectCn {
    const PLACEHOLDERS: [&str; 2] = ["{node}", "{service}"];

    /// The pattern, or why it is not one.
    pub(crate) fn parse(text: &str) -> Result<SubjectCn, Problem> {
        if text.is_empty() {
            return Err(Problem::new("is empty"));
        }
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            let tail = &rest[at..];
            match Self::PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
                Some(p) => rest = &tail[p.len()..],
                None => {
                    return Err(Problem::new(format!(
                        "may hold only the placeholders {{node}} and {{service}}, and no other \
                         brace (at {tail:?})"
                    )));
                }
            }
        }
        Ok(SubjectCn(text.to_string()))
    }

    /// The subject CN the identity `node/service` must have.
    pub(crate) fn expand(&self, node: &str, service: &str) -> String {
        self.0.replace("{node}", node).replace("{service}", service)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated policy. Its serialized form is canonical (fields in a fixed order, services
/// sorted, unset options left out): [`Policy::digest`] names the policy in force, whatever file
/// spelled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub validity_days: u32,
    pub stalled_below_percent: u32,
    pub(crate) min_age_hours: u32,
    pub(crate) keys: KeyMode,
    /// `apply` refuses a plan older than this.
    pub(crate) max_plan_age_hours: u32,
    /// Backups of the newest this many runs are kept; older ones are pruned.
    pub(crate) keep_runs: u32,
    /// How long one hook may run before its whole process group is killed.
    pub(crate) hook_timeout_seconds: u32,
    /// The subject CN every certificate must have, unless its service sets its own; unset: the
    /// fleet's naming is its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject_cn: Option<SubjectCn>,
    pub services: BTreeMap<String, Service>,
    /// Where every writing run leaves its Prometheus metrics (absolute, or relative to the
    /// root). Absent from the canonical form when unset, so that older digests still hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metrics_file: Option<String>,
}

/// Where the policy in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// No `rekey.toml`: the built-in policy.
    Builtin,
    /// `rekey.toml`, with the SHA-256 of its bytes.
    File { path: PathBuf, sha256: Digest },
}

/// The policy in force, where it came from, and the service names its file wrote.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) policy: Policy,
    pub(crate) source: Source,
    /// The names under the file's `[services]` (empty for the built-in policy).
    pub(crate) named: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    self_renews_cert: bool,
    #[serde(default)]
    self_rotates_token: bool,
    #[serde(default)]
    subject_cn: Option<String>,
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
    subject_cn: Option<String>,
    #[serde(default = "default_builtin_services")]
    builtin_services: bool,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
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
fn default_keep_runs() -> u32 {
    12
}
fn default_hook_timeout() -> u32 {
    120
}
fn default_builtin_services() -> bool {
    true
}

/// The reference fleet's services: `mocctl` renews nothing, the rest renew their certificates.
fn builtin_services() -> BTreeMap<String, Service> {
    let mut services = BTreeMap::new();
    services.insert("mocctl".to_string(), Service::default());
    for name in [
        "nodeagent",
        "kva",
        "kms",
        "caph",
        "cloud-operator",
        "cert-manager",
        "csi",
    ] {
        let service = Service {
            self_renews_cert: true,
            ..Service::default()
        };
        services.insert(name.to_string(), service);
    }
    services
}

impl Policy {
    /// The policy used when the root has no `rekey.toml`: the reference fleet's services.
    pub(crate) fn builtin() -> Policy {
        Policy {
            validity_days: default_validity(),
            stalled_below_percent: default_stalled(),
            min_age_hours: default_min_age(),
            keys: default_keys(),
            max_plan_age_hours: default_max_plan_age(),
            keep_runs: default_keep_runs(),
            hook_timeout_seconds: default_hook_timeout(),
            subject_cn: None,
            services: builtin_services(),
            metrics_file: None,
        }
    }

    /// Parses and validates policy text; the error names the offending field.
    #[cfg_attr(not(feature = "testkit"), expect(dead_code, reason = "the tests use it"))]
    pub fn parse(text: &str) -> Result<Policy> {
        Policy::parse_named(text).map(|(policy, _)| policy)
    }

    /// [`Policy::parse`], also returning the service names the text wrote under `[services]`.
    fn parse_named(text: &str) -> Result<(Policy, Vec<String>)> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!(crate::values::clip(&e.to_string())))
            .context("invalid policy")?;
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
        let pattern = |text: Option<String>, field: &str| {
            text.map(|t| {
                SubjectCn::parse(&t).map_err(|why| anyhow::anyhow!("{field} {t:?} {why}"))
            })
            .transpose()
        };
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
        for (name, raw) in raw.services {
            if !names::is_valid(&name) {
                bail!("service name {name:?} in [services] is not a valid service name");
            }
            if raw.reload.as_deref().is_some_and(|r| r.trim().is_empty()) {
                bail!(
                    "[services.{name}] reload is empty: give the command that reloads it, or \
                     remove it"
                );
            }
            let service = Service {
                self_renews_cert: raw.self_renews_cert,
                self_rotates_token: raw.self_rotates_token,
                subject_cn: pattern(raw.subject_cn, &format!("[services.{name}] subject_cn"))?,
                reload: raw.reload,
            };
            services.insert(name, service);
        }
        let policy = Policy {
            validity_days: raw.validity_days,
            stalled_below_percent: raw.stalled_below_percent,
            min_age_hours: raw.min_age_hours,
            keys: raw.keys,
            max_plan_age_hours: raw.max_plan_age_hours,
            keep_runs: raw.keep_runs,
            hook_timeout_seconds: raw.hook_timeout_seconds,
            subject_cn: pattern(raw.subject_cn, "subject_cn")?,
            services,
            metrics_file: raw.metrics_file,
        };
        Ok((policy, named))
    }

    /// Where `metrics_file` points, for the fleet at `root`.
    pub(crate) fn metrics_path(&self, root: &Path) -> Option<PathBuf> {
        self.metrics_file.as_ref().map(|f| root.join(f))
    }

    pub(crate) fn renewal(&self, service: &str) -> Renewal {
        self.services
            .get(service)
            .map(|s| Renewal {
                self_renews_cert: s.self_renews_cert,
                self_rotates_token: s.self_rotates_token,
            })
            .unwrap_or_default()
    }

    /// The subject CN pattern `service`'s certificates must match: its own, else the policy's.
    pub(crate) fn subject_cn(&self, service: &str) -> Option<&SubjectCn> {
        self.services
            .get(service)
            .and_then(|s| s.subject_cn.as_ref())
            .or(self.subject_cn.as_ref())
    }

    pub fn validity(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.validity_days))
    }

    pub fn min_age(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.min_age_hours))
    }

    pub(crate) fn max_plan_age(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.max_plan_age_hours))
    }

    /// The digest of the policy's canonical form (the plan's `policy_sha256`).
    pub(crate) fn digest(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).expect("a policy always serializes"))
    }
}

/// Loads `<root>/rekey.toml` over the built-in default, or the built-in policy when it is absent.
pub(crate) fn load(root: &Path) -> Result<Loaded> {
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
        Slot::NotReadable => bail!("policy {} {}", path.display(), fsio::NOT_READABLE),
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
mod tests;
