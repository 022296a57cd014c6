//! The rotation policy (docs/design.md §4): `<root>/rekey.toml` laid over the built-in default for
//! the reference fleet (its `[services]` extend the built-in table unless `builtin_services =
//! false`). Parsed once into [`Policy`], with where it came from ([`Source`]); nothing after this
//! module sees TOML. `policy::file` is the file as written, `policy::key_mode` and
//! `policy::subject_cn` two of its values; `policy::shown` prints it back and warns about names
//! that look mistyped.

mod file;
mod key_mode;
mod shown;
mod subject_cn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::TimeDelta;
use serde::Serialize;

use crate::digest::Digest;

use crate::fsio::{self, Slot};
use crate::names;
use crate::values::Step::{self, Key};
pub(crate) use file::Set;
use file::RawPolicy;
pub(crate) use key_mode::KeyMode;
pub(crate) use subject_cn::SubjectCn;

/// The policy file's name inside the fleet root.
pub(crate) const FILE_NAME: &str = "rekey.toml";

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
    /// How long a CA that `rekey ca begin` makes is valid. Each CA field is absent from the
    /// canonical form at its built-in value, so that older digests still hold.
    #[serde(skip_serializing_if = "Ca::validity_is_builtin")]
    pub(crate) ca_validity_days: u32,
    /// Within this many days of the active CA's end, `status` and `plan` say `rekey ca begin`.
    #[serde(skip_serializing_if = "Ca::rotate_before_is_builtin")]
    pub(crate) ca_rotate_before_days: u32,
    /// `rekey ca switch` is refused until this many hours after `begin`.
    #[serde(skip_serializing_if = "Ca::settle_is_builtin")]
    pub(crate) ca_trust_settle_hours: u32,
    /// The shell command run once when the CA bundle changed (the issuer's side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_reload: Option<String>,
}

/// The built-in values of the CA fields.
struct Ca;

impl Ca {
    const VALIDITY_DAYS: u32 = 365;
    const ROTATE_BEFORE_DAYS: u32 = 120;
    const TRUST_SETTLE_HOURS: u32 = 0;

    fn validity_is_builtin(days: &u32) -> bool {
        *days == Ca::VALIDITY_DAYS
    }

    fn rotate_before_is_builtin(days: &u32) -> bool {
        *days == Ca::ROTATE_BEFORE_DAYS
    }

    fn settle_is_builtin(hours: &u32) -> bool {
        *hours == Ca::TRUST_SETTLE_HOURS
    }
}

/// Where the policy in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// No `rekey.toml`: the built-in policy.
    Builtin,
    /// `rekey.toml`, with the SHA-256 of its bytes.
    File { path: PathBuf, sha256: Digest },
}

/// The policy in force, where it came from, and what its file wrote.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) policy: Policy,
    pub(crate) source: Source,
    /// The names under the file's `[services]` (empty for the built-in policy).
    pub(crate) named: Vec<String>,
    /// The fields the file set; every other field holds its built-in value.
    pub(crate) set: Set,
}


/// A file's top-level numbers and key mode, each its own or the built-in one.
struct Values {
    validity_days: u32,
    stalled_below_percent: u32,
    min_age_hours: u32,
    keys: KeyMode,
    max_plan_age_hours: u32,
    keep_runs: u32,
    hook_timeout_seconds: u32,
    ca_validity_days: u32,
    ca_rotate_before_days: u32,
    ca_trust_settle_hours: u32,
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
            validity_days: 90,
            stalled_below_percent: 25,
            min_age_hours: 24,
            keys: KeyMode::Rotate,
            max_plan_age_hours: 168,
            keep_runs: 12,
            hook_timeout_seconds: 120,
            subject_cn: None,
            services: builtin_services(),
            metrics_file: None,
            ca_validity_days: Ca::VALIDITY_DAYS,
            ca_rotate_before_days: Ca::ROTATE_BEFORE_DAYS,
            ca_trust_settle_hours: Ca::TRUST_SETTLE_HOURS,
            ca_reload: None,
        }
    }

    /// Parses and validates policy text; the error names the offending field.
    #[cfg_attr(not(feature = "testkit"), expect(dead_code, reason = "the tests use it"))]
    pub fn parse(text: &str) -> Result<Policy> {
        Policy::parse_named(text).map(|(policy, _, _)| policy)
    }

    /// [`Policy::parse`], also returning the service names the text wrote under `[services]`
    /// and the fields it set. A field the text leaves out keeps its built-in value: a
    /// `[services.X]` table of a built-in service changes only the fields it names.
    fn parse_named(text: &str) -> Result<(Policy, Vec<String>, Set)> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!(crate::values::clip(&e.to_string())))
            .context("invalid policy")?;
        let set = raw.set();
        let builtin = Policy::builtin();
        let v = Values {
            validity_days: raw.validity_days.unwrap_or(builtin.validity_days),
            stalled_below_percent: raw
                .stalled_below_percent
                .unwrap_or(builtin.stalled_below_percent),
            min_age_hours: raw.min_age_hours.unwrap_or(builtin.min_age_hours),
            keys: raw.keys.unwrap_or(builtin.keys),
            max_plan_age_hours: raw.max_plan_age_hours.unwrap_or(builtin.max_plan_age_hours),
            keep_runs: raw.keep_runs.unwrap_or(builtin.keep_runs),
            hook_timeout_seconds: raw
                .hook_timeout_seconds
                .unwrap_or(builtin.hook_timeout_seconds),
            ca_validity_days: raw.ca_validity_days.unwrap_or(builtin.ca_validity_days),
            ca_rotate_before_days: raw
                .ca_rotate_before_days
                .unwrap_or(builtin.ca_rotate_before_days),
            ca_trust_settle_hours: raw
                .ca_trust_settle_hours
                .unwrap_or(builtin.ca_trust_settle_hours),
        };
        // The line of a value the parser accepted and the rules below refuse.
        let at = |path: &[Step<'_>]| {
            crate::values::toml_line(text, path)
                .map(|line| format!("line {line}: "))
                .unwrap_or_default()
        };
        if raw.version != 1 {
            bail!(
                "{}policy version {} is not supported (this rekey reads version 1)",
                at(&[Key("version")]),
                raw.version
            );
        }
        let ranges = [
            ("validity_days", v.validity_days, 1..=3650),
            ("stalled_below_percent", v.stalled_below_percent, 1..=99),
            ("max_plan_age_hours", v.max_plan_age_hours, 1..=8760),
            ("keep_runs", v.keep_runs, 1..=10_000),
            ("hook_timeout_seconds", v.hook_timeout_seconds, 1..=86_400),
            ("ca_validity_days", v.ca_validity_days, 2..=36_500),
            ("ca_rotate_before_days", v.ca_rotate_before_days, 1..=36_500),
            ("ca_trust_settle_hours", v.ca_trust_settle_hours, 0..=8_760),
        ];
        for (field, value, range) in ranges {
            if !range.contains(&value) {
                bail!(
                    "{}{field} must be between {} and {}, not {value}",
                    at(&[Key(field)]),
                    range.start(),
                    range.end()
                );
            }
        }
        if v.min_age_hours >= v.validity_days.saturating_mul(24) {
            bail!(
                "{}min_age_hours ({}) must be shorter than validity_days",
                at(&[Key("min_age_hours")]),
                v.min_age_hours
            );
        }
        // A file that names the CA's lifetime or window gets them checked against each other
        // and against validity_days; the built-in values pass with every validity_days up to
        // the CA window, and a longer one is warned about where a leaf would be capped (§3a).
        if raw.ca_rotate_before_days.is_some() && v.ca_rotate_before_days < v.validity_days {
            bail!(
                "{}ca_rotate_before_days ({}) must be at least validity_days ({}): credentials \
                 issued before the CA rotation begins would be cut short at the CA's end",
                at(&[Key("ca_rotate_before_days")]),
                v.ca_rotate_before_days,
                v.validity_days
            );
        }
        if (raw.ca_validity_days.is_some() || raw.ca_rotate_before_days.is_some())
            && v.ca_validity_days <= v.ca_rotate_before_days.saturating_add(v.validity_days)
        {
            let field = if raw.ca_validity_days.is_some() {
                "ca_validity_days"
            } else {
                "ca_rotate_before_days"
            };
            bail!(
                "{}ca_validity_days ({}) must be longer than ca_rotate_before_days + \
                 validity_days ({}): a new CA would already be due for rotation",
                at(&[Key(field)]),
                v.ca_validity_days,
                v.ca_rotate_before_days.saturating_add(v.validity_days)
            );
        }
        if raw.ca_reload.as_deref().is_some_and(|r| r.trim().is_empty()) {
            bail!(
                "{}ca_reload is empty: give the command that reloads the issuer's CA bundle, or \
                 remove it",
                at(&[Key("ca_reload")])
            );
        }
        let pattern = |text: Option<String>, field: &str, path: &[Step<'_>]| {
            text.map(|t| {
                SubjectCn::parse(&t)
                    .map_err(|why| anyhow::anyhow!("{}{field} {t:?} {why}", at(path)))
            })
            .transpose()
        };
        if let Some(file) = &raw.metrics_file
            && (file.is_empty() || file.contains('\0'))
        {
            bail!(
                "{}metrics_file must be a path, not {file:?}",
                at(&[Key("metrics_file")])
            );
        }
        let named = raw.services.keys().cloned().collect();
        let mut services = if raw.builtin_services {
            builtin.services
        } else {
            BTreeMap::new()
        };
        for (name, raw) in raw.services {
            if !names::is_valid(&name) {
                bail!(
                    "{}service name {name:?} in [services] is not a valid service name",
                    at(&[Key("services"), Key(&name)])
                );
            }
            if raw.reload.as_deref().is_some_and(|r| r.trim().is_empty()) {
                bail!(
                    "{}[services.{name}] reload is empty: give the command that reloads it, or \
                     remove it",
                    at(&[Key("services"), Key(&name), Key("reload")])
                );
            }
            let base = services.remove(&name).unwrap_or_default();
            let subject_cn = pattern(
                raw.subject_cn,
                &format!("[services.{name}] subject_cn"),
                &[Key("services"), Key(&name), Key("subject_cn")],
            )?;
            let service = Service {
                self_renews_cert: raw.self_renews_cert.unwrap_or(base.self_renews_cert),
                self_rotates_token: raw.self_rotates_token.unwrap_or(base.self_rotates_token),
                subject_cn: subject_cn.or(base.subject_cn),
                reload: raw.reload.or(base.reload),
            };
            services.insert(name, service);
        }
        let policy = Policy {
            validity_days: v.validity_days,
            stalled_below_percent: v.stalled_below_percent,
            min_age_hours: v.min_age_hours,
            keys: v.keys,
            max_plan_age_hours: v.max_plan_age_hours,
            keep_runs: v.keep_runs,
            hook_timeout_seconds: v.hook_timeout_seconds,
            subject_cn: pattern(raw.subject_cn, "subject_cn", &[Key("subject_cn")])?,
            services,
            metrics_file: raw.metrics_file,
            ca_validity_days: v.ca_validity_days,
            ca_rotate_before_days: v.ca_rotate_before_days,
            ca_trust_settle_hours: v.ca_trust_settle_hours,
            ca_reload: raw.ca_reload,
        };
        Ok((policy, named, set))
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

    /// How long a CA made by `rekey ca begin` is valid.
    pub(crate) fn ca_validity(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.ca_validity_days))
    }

    /// How long before the active CA's end a CA rotation is due.
    pub(crate) fn ca_rotate_before(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.ca_rotate_before_days))
    }

    /// How long after `rekey ca begin` a switch waits for relying parties.
    pub(crate) fn ca_trust_settle(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.ca_trust_settle_hours))
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
                set: Set::new(),
            });
        }
        Slot::Present(bytes) => bytes,
        Slot::Unusable(why) => bail!("policy {} {why}", path.display()),
        Slot::NotReadable => bail!("policy {} {}", path.display(), fsio::NOT_READABLE),
    };
    let sha256 = Digest::of(&bytes);
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("policy {} is not UTF-8 text", path.display()))?;
    let (policy, named, set) = Policy::parse_named(&text)
        .with_context(|| format!("failed to load policy {}", path.display()))?;
    Ok(Loaded {
        policy,
        source: Source::File { path, sha256 },
        named,
        set,
    })
}

#[cfg(test)]
mod tests;
