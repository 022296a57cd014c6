//! The policy file as written (`rekey.toml`): every field optional, so that one left out keeps
//! its built-in value; [`super::Policy`] validates it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::key_mode::KeyMode;

/// The fields a policy file set: `(None, "validity_days")` for a top-level field,
/// `(Some("kms"), "reload")` for a field of `[services.kms]`.
pub(crate) type Set = std::collections::BTreeSet<(Option<String>, &'static str)>;

/// A `[services.X]` table as written: a field left out keeps the service's built-in value (or,
/// for a service that is not built in, off and unset).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    #[serde(default)]
    pub(super) self_renews_cert: Option<bool>,
    #[serde(default)]
    pub(super) self_rotates_token: Option<bool>,
    #[serde(default)]
    pub(super) subject_cn: Option<String>,
    #[serde(default)]
    pub(super) reload: Option<String>,
}

/// The file as written: a field left out keeps its built-in value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) version: u32,
    #[serde(default)]
    pub(super) validity_days: Option<u32>,
    #[serde(default)]
    pub(super) stalled_below_percent: Option<u32>,
    #[serde(default)]
    pub(super) min_age_hours: Option<u32>,
    #[serde(default)]
    pub(super) keys: Option<KeyMode>,
    #[serde(default)]
    pub(super) max_plan_age_hours: Option<u32>,
    #[serde(default)]
    pub(super) keep_runs: Option<u32>,
    #[serde(default)]
    pub(super) hook_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub(super) subject_cn: Option<String>,
    #[serde(default = "default_builtin_services")]
    pub(super) builtin_services: bool,
    #[serde(default)]
    pub(super) services: BTreeMap<String, RawService>,
    #[serde(default)]
    pub(super) metrics_file: Option<String>,
    #[serde(default)]
    pub(super) ca_validity_days: Option<u32>,
    #[serde(default)]
    pub(super) ca_rotate_before_days: Option<u32>,
    #[serde(default)]
    pub(super) ca_trust_settle_hours: Option<u32>,
    #[serde(default)]
    pub(super) ca_reload: Option<String>,
}

impl RawPolicy {
    /// The fields this file sets, by name.
    pub(super) fn set(&self) -> Set {
        let top = [
            ("validity_days", self.validity_days.is_some()),
            ("stalled_below_percent", self.stalled_below_percent.is_some()),
            ("min_age_hours", self.min_age_hours.is_some()),
            ("keys", self.keys.is_some()),
            ("max_plan_age_hours", self.max_plan_age_hours.is_some()),
            ("keep_runs", self.keep_runs.is_some()),
            ("hook_timeout_seconds", self.hook_timeout_seconds.is_some()),
            ("subject_cn", self.subject_cn.is_some()),
            ("metrics_file", self.metrics_file.is_some()),
            ("ca_validity_days", self.ca_validity_days.is_some()),
            ("ca_rotate_before_days", self.ca_rotate_before_days.is_some()),
            ("ca_trust_settle_hours", self.ca_trust_settle_hours.is_some()),
            ("ca_reload", self.ca_reload.is_some()),
        ];
        let mut set: Set = top
            .into_iter()
            .filter(|(_, named)| *named)
            .map(|(field, _)| (None, field))
            .collect();
        for (name, s) in &self.services {
            let fields = [
                ("self_renews_cert", s.self_renews_cert.is_some()),
                ("self_rotates_token", s.self_rotates_token.is_some()),
                ("subject_cn", s.subject_cn.is_some()),
                ("reload", s.reload.is_some()),
            ];
            set.extend(
                fields
                    .into_iter()
                    .filter(|(_, named)| *named)
                    .map(|(field, _)| (Some(name.clone()), field)),
            );
        }
        set
    }
}

fn default_builtin_services() -> bool {
    true
}
