//! The policy as an operator sees it: printed back as a self-contained `rekey.toml`
//! (`rekey policy`), its source named in one line (`status`, `plan` and the reports), and the
//! service names a file wrote that look mistyped. Pure: values in, text out.

use std::collections::BTreeSet;

use super::{Loaded, Policy, Source};

/// One field of a policy as shown: its service (`None` at the top level), its name, its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) service: Option<String>,
    pub(crate) name: &'static str,
    pub(crate) value: serde_json::Value,
}

impl Policy {
    /// Every field of the policy, in the order a file writes them: the top-level fields (unset
    /// options left out), then each service's. The one listing `rekey policy` prints, as TOML
    /// and as JSON.
    pub(crate) fn fields(&self) -> Vec<Field> {
        use serde_json::Value;
        let keys = self.keys.as_str();
        let top: [(&'static str, Option<Value>); 13] = [
            ("validity_days", Some(self.validity_days.into())),
            ("stalled_below_percent", Some(self.stalled_below_percent.into())),
            ("min_age_hours", Some(self.min_age_hours.into())),
            ("keys", Some(keys.into())),
            ("max_plan_age_hours", Some(self.max_plan_age_hours.into())),
            ("keep_runs", Some(self.keep_runs.into())),
            ("hook_timeout_seconds", Some(self.hook_timeout_seconds.into())),
            ("subject_cn", self.subject_cn.as_ref().map(|p| p.as_str().into())),
            ("metrics_file", self.metrics_file.as_deref().map(Value::from)),
            ("ca_validity_days", Some(self.ca_validity_days.into())),
            ("ca_rotate_before_days", Some(self.ca_rotate_before_days.into())),
            ("ca_trust_settle_hours", Some(self.ca_trust_settle_hours.into())),
            ("ca_reload", self.ca_reload.as_deref().map(Value::from)),
        ];
        let mut fields: Vec<Field> = top
            .into_iter()
            .filter_map(|(name, value)| {
                Some(Field {
                    service: None,
                    name,
                    value: value?,
                })
            })
            .collect();
        for (service, s) in &self.services {
            let own: [(&'static str, Option<Value>); 4] = [
                ("self_renews_cert", Some(s.self_renews_cert.into())),
                ("self_rotates_token", Some(s.self_rotates_token.into())),
                ("subject_cn", s.subject_cn.as_ref().map(|p| p.as_str().into())),
                ("reload", s.reload.as_deref().map(Value::from)),
            ];
            fields.extend(own.into_iter().filter_map(|(name, value)| {
                Some(Field {
                    service: Some(service.clone()),
                    name,
                    value: value?,
                })
            }));
        }
        fields
    }

    /// The policy as a file that parses back to this same policy: every field with its value
    /// and the whole service table, so `builtin_services = false`.
    #[cfg(test)]
    pub(crate) fn to_toml(&self) -> String {
        self.to_toml_noting(|_| None)
    }

    /// The policy as a file that parses back to this same policy, each field's line ending in
    /// the comment `note` gives it, if any.
    pub(crate) fn to_toml_noting(&self, note: impl Fn(&Field) -> Option<String>) -> String {
        let line = |field: &Field| {
            let value = match &field.value {
                serde_json::Value::String(text) => quote(text),
                other => other.to_string(),
            };
            let comment = note(field).map(|n| format!("  # {n}")).unwrap_or_default();
            format!("{} = {value}{comment}\n", field.name)
        };
        let (top, services): (Vec<Field>, Vec<Field>) =
            self.fields().into_iter().partition(|f| f.service.is_none());
        let mut out = "version = 1\n".to_string();
        out.extend(top.iter().map(line));
        out.push_str("# the whole service table follows: the built-in one is not added to it\n");
        out.push_str("builtin_services = false\n");
        let mut table = None;
        for field in &services {
            if table != field.service.as_deref() {
                table = field.service.as_deref();
                let name = table.unwrap_or_default();
                out.push_str(&format!("\n[services.{}]\n", bare_or_quoted(name)));
            }
            out.push_str(&line(field));
        }
        out
    }
}

impl Loaded {
    /// Where the value of `field` comes from: `file` when the policy file set it, `builtin`
    /// otherwise (the built-in policy, or a built-in service's own value).
    pub(crate) fn source_of(&self, field: &Field) -> &'static str {
        if self.set.contains(&(field.service.clone(), field.name)) {
            "file"
        } else {
            "builtin"
        }
    }
}

impl Source {
    /// One line naming the policy in force: `built-in`, or the file with its SHA-256.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Builtin => "built-in (no rekey.toml)".to_string(),
            Source::File { path, sha256 } => {
                format!("{} (sha256 {sha256})", path.display())
            }
        }
    }

    /// `builtin` or `file`, for machines.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Source::Builtin => "builtin",
            Source::File { .. } => "file",
        }
    }
}

impl Loaded {
    /// A warning for every service the file names that is neither built in nor in the fleet
    /// (`fleet` holds the service names found under `nodes/`), naming the nearest known name.
    /// Whether the policy file names services, which [`Loaded::warnings`] checks against the
    /// fleet's.
    pub(crate) fn names_services(&self) -> bool {
        matches!(self.source, Source::File { .. }) && !self.named.is_empty()
    }

    pub(crate) fn warnings(&self, fleet: &BTreeSet<&str>) -> Vec<String> {
        let mut known: BTreeSet<&str> = fleet.clone();
        let builtin = super::builtin_services();
        known.extend(builtin.keys().map(String::as_str));
        let file = match &self.source {
            Source::File { path, .. } => path.display().to_string(),
            Source::Builtin => return Vec::new(),
        };
        self.named
            .iter()
            .filter(|name| !known.contains(name.as_str()))
            .map(|name| {
                let hint = nearest(name, &known)
                    .map(|n| format!(": did you mean {n:?}?"))
                    .unwrap_or_default();
                format!(
                    "{file} names [services.{name}], which is neither a built-in service nor \
                     one in the fleet{hint}"
                )
            })
            .collect()
    }
}

/// The known name closest to `name` by edit distance (the first in order on a tie).
fn nearest<'a>(name: &str, known: &BTreeSet<&'a str>) -> Option<&'a str> {
    known
        .iter()
        .min_by_key(|k| edit_distance(name, k))
        .copied()
}

/// Levenshtein distance counted in characters, with a transposition as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// A TOML key: bare when it can be, quoted otherwise (a `.` would split it).
fn bare_or_quoted(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        quote(name)
    }
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn quote(s: &str) -> String {
    serde_json::to_string(s)
        .expect("a string always serializes")
        .replace('\u{7f}', "\\u007F")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn the_printed_policy_parses_back_to_the_same_policy() {
        let cases = [
            ("built-in", "version = 1"),
            (
                "everything set",
                "version = 1\nvalidity_days = 30\nstalled_below_percent = 10\nmin_age_hours = 0\n\
                 keys = \"reuse\"\nmax_plan_age_hours = 12\nmetrics_file = \"/var/lib/m \\\"x\\\".prom\"\n\
                 [services.\"svc.v2\"]\nself_rotates_token = true",
            ),
            ("empty table", "version = 1\nbuiltin_services = false"),
        ];
        for (name, text) in cases {
            let policy = Policy::parse(text).unwrap();
            let printed = policy.to_toml();
            let back = Policy::parse(&printed).unwrap_or_else(|e| panic!("{name}: {e:#}\n{printed}"));
            assert_eq!(back, policy, "{name}:\n{printed}");
            assert_eq!(back.digest(), policy.digest(), "{name}");
        }
    }

    #[test]
    fn services_neither_built_in_nor_in_the_fleet_are_warned_about() {
        let loaded = |text: &str| {
            let (policy, named, set) = Policy::parse_named(text).unwrap();
            Loaded {
                policy,
                set,
                source: Source::File {
                    path: "/f/rekey.toml".into(),
                    sha256: Digest::of(text.as_bytes()),
                },
                named,
            }
        };
        let fleet: BTreeSet<&str> = ["vault", "billing-api"].into();
        let cases: [(&str, &str, &[&str]); 5] = [
            ("none named", "version = 1", &[]),
            ("a built-in one", "version = 1\n[services.kms]", &[]),
            ("one in the fleet", "version = 1\n[services.vault]", &[]),
            (
                "a typo of a built-in",
                "version = 1\n[services.nodeagnet]",
                &["[services.nodeagnet]", "did you mean \"nodeagent\"?"],
            ),
            (
                "a typo of a fleet service",
                "version = 1\n[services.billing-apj]",
                &["did you mean \"billing-api\"?", "/f/rekey.toml"],
            ),
        ];
        for (name, text, wanted) in cases {
            let warnings = loaded(text).warnings(&fleet);
            assert_eq!(warnings.len(), usize::from(!wanted.is_empty()), "{name}: {warnings:?}");
            for w in wanted {
                assert!(warnings[0].contains(w), "{name}: {warnings:?}");
            }
        }
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        let cases = [
            ("same", "kms", "kms", 0),
            ("swap", "nodeagnet", "nodeagent", 1),
            ("insert", "csi", "csix", 1),
            ("replace", "kva", "kvb", 1),
            ("empty", "", "abc", 3),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(edit_distance(a, b), want, "{name}");
        }
    }
}
