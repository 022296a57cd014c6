//! What the journal and the report say of a hook: a call (which hook, for whom), where it came
//! from ([`HookSource`], never a command line), and how it ended. Journals of the previous
//! release, which held a command line, are read and their command never kept.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::IdentityId;
use crate::problem::Problem;

/// One hook to run, as journaled: *which* hook, never its command line. What runs is resolved
/// from the trusted configuration when the call runs ([`HookSet::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCall", into = "RawCall")]
pub(crate) struct HookCall {
    /// Unique within its run.
    pub(crate) call: u32,
    /// `deploy` (per identity) or `post` (per run).
    pub(crate) kind: HookKind,
    /// The identity a deploy call is for.
    pub(crate) id: Option<IdentityId>,
    pub(crate) source: HookSource,
    /// The new credentials' expiry (deploy hooks).
    pub(crate) not_after: Option<String>,
}

/// Where a hook comes from. Its label is the report's `source`: `reload`, `--deploy-hook`,
/// `--post-hook`, `hooks/deploy/NAME`, `hooks/post/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookSource {
    /// The policy's `reload` of the call's service.
    Reload,
    /// The executable `hooks/<kind>/<name>`.
    Folder { kind: HookKind, name: String },
    /// A `--deploy-hook` / `--post-hook`: the SHA-256 of its text and its place among them.
    CommandLine {
        kind: HookKind,
        sha256: Digest,
        position: u32,
    },
    /// The policy's `ca_reload`: a post call of a CA rotation stage that changed the bundle.
    CaReload,
    /// A label no release of rekey writes (a damaged or planted journal): never runs.
    Unknown(String),
}

impl HookSource {
    /// The report's `source` string.
    pub(crate) fn label(&self) -> String {
        match self {
            HookSource::Reload => "reload".to_string(),
            HookSource::CaReload => "ca_reload".to_string(),
            HookSource::Folder { kind, name } => format!("hooks/{}/{name}", kind.as_str()),
            HookSource::CommandLine { kind, .. } => format!("--{}-hook", kind.as_str()),
            HookSource::Unknown(label) => label.clone(),
        }
    }

    /// The source a journal's label (and, for a command-line hook, digest) names. The previous
    /// release journaled the command text instead of its digest: only its digest is kept.
    fn parse(label: &str, sha256: Option<Digest>, legacy: Option<&str>, position: u32) -> Self {
        let cli = |kind| match sha256.or(legacy.map(|c| Digest::of(c.as_bytes()))) {
            Some(sha256) => HookSource::CommandLine {
                kind,
                sha256,
                position,
            },
            None => HookSource::Unknown(label.to_string()),
        };
        let folder = |kind, name: &str| {
            if is_hook_name(name) {
                HookSource::Folder {
                    kind,
                    name: name.to_string(),
                }
            } else {
                HookSource::Unknown(label.to_string())
            }
        };
        match label {
            "reload" => HookSource::Reload,
            "ca_reload" => HookSource::CaReload,
            "--deploy-hook" => cli(HookKind::Deploy),
            "--post-hook" => cli(HookKind::Post),
            _ => match (
                label.strip_prefix("hooks/deploy/"),
                label.strip_prefix("hooks/post/"),
            ) {
                (Some(name), _) => folder(HookKind::Deploy, name),
                (_, Some(name)) => folder(HookKind::Post, name),
                _ => HookSource::Unknown(label.to_string()),
            },
        }
    }
}

impl std::fmt::Display for HookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A file name in a hooks folder that rekey runs: not hidden, no path in it.
pub(crate) fn is_hook_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0'])
}

/// A hook call as a journal line holds it. `command` and `shell` are the previous release's
/// command line: read (a journal it wrote must replay), never kept, never run.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    call: u32,
    kind: HookKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(default, skip_serializing)]
    command: Option<String>,
    #[serde(default, skip_serializing)]
    #[expect(dead_code, reason = "accepted so that old journals read; never used")]
    shell: Option<serde::de::IgnoredAny>,
}

impl TryFrom<RawCall> for HookCall {
    type Error = Problem;

    fn try_from(raw: RawCall) -> Result<HookCall, Problem> {
        let id = match (&raw.node, &raw.service) {
            (None, None) => None,
            (Some(node), Some(service)) => {
                Some(IdentityId::new(node, service).ok_or_else(|| {
                    Problem::new(format!("{node}/{service} is not an identity's name"))
                })?)
            }
            _ => {
                return Err(Problem::new(
                    "a hook call names a node without a service, or a service without a node",
                ));
            }
        };
        let position = raw.position.unwrap_or(0);
        let source = HookSource::parse(
            &raw.source,
            raw.command_sha256,
            raw.command.as_deref(),
            position,
        );
        Ok(HookCall {
            call: raw.call,
            kind: raw.kind,
            id,
            source,
            not_after: raw.not_after,
        })
    }
}

impl From<HookCall> for RawCall {
    fn from(call: HookCall) -> RawCall {
        let (command_sha256, position) = match &call.source {
            HookSource::CommandLine {
                sha256, position, ..
            } => (Some(*sha256), Some(*position)),
            _ => (None, None),
        };
        RawCall {
            call: call.call,
            kind: call.kind,
            node: call.id.as_ref().map(|id| id.node().to_string()),
            service: call.id.as_ref().map(|id| id.service().to_string()),
            source: call.source.label(),
            command_sha256,
            position,
            not_after: call.not_after,
            command: None,
            shell: None,
        }
    }
}

impl HookCall {
    /// `nodes/<node>/<service>` for a deploy call.
    pub(crate) fn dir(&self) -> Option<String> {
        self.id
            .as_ref()
            .map(|id| id.relative().to_string_lossy().into_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HookKind {
    Deploy,
    Post,
}

impl HookKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HookKind::Deploy => "deploy",
            HookKind::Post => "post",
        }
    }
}

/// How a hook ended, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookResult {
    pub(crate) source: String,
    /// `ok`, `failed` or `timed out`.
    pub(crate) status: HookStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exit_code: Option<i32>,
    /// Why it failed, when it did not even run, or what it died of.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) detail: String,
    /// Its output (first 64 KiB), relative to the fleet root.
    pub(crate) log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HookStatus {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "timed out")]
    TimedOut,
}
