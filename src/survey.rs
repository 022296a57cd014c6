//! The read side end to end: CA, policy, scan, inspect and classify every identity of a root.
//! The read commands stream the judged identities in (node, service) order through bounded
//! windows ([`stream`]); writing commands collect them into a [`Survey`].

mod judged;
mod stream;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

use crate::ca::{self, Ca};
use crate::classify::{self, Action, Context, Kind, State, Verdict};
use crate::inspect::{self, Window};
use crate::keys::KeyAlg;
use crate::policy::{self, Policy};
use crate::scan::{self, Issue};
use crate::select::{Filter, Grain};

pub use judged::{End, Judged, Person};

/// One credential as classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessed {
    pub kind: Kind,
    pub verdict: Verdict,
    pub window: Option<Window>,
    pub sha256: Option<crate::digest::Digest>,
    pub self_rotates: bool,
    pub key_alg: Option<KeyAlg>,
    /// Subject CN and serial of a usable certificate (for the metrics' labels).
    pub names: Option<inspect::CertNames>,
}

/// One identity as classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node: String,
    pub service: String,
    /// The directory judged (device and inode), when it was read: a writer acts on it only.
    pub dir: Option<crate::fsio::FileId>,
    pub cert: Option<Assessed>,
    pub token: Option<Assessed>,
}

impl Identity {
    pub fn credentials(&self) -> impl Iterator<Item = &Assessed> {
        self.cert.iter().chain(self.token.iter())
    }

    /// Whether the identity is left for a person, as `recover` or `problem`, with its own
    /// reasons (not those spread from its other credential), each once.
    pub fn needs_person(&self) -> Option<(&'static str, String)> {
        let mut tag = None;
        let mut reasons: Vec<&str> = Vec::new();
        for c in self.credentials() {
            match c.verdict.state.action() {
                Action::Recover => tag = tag.or(Some("recover")),
                Action::Skip => tag = Some("problem"),
                Action::Keep | Action::Rotate => continue,
            }
            let own = !c.verdict.reason.starts_with(classify::SPREAD_PREFIX);
            if own && !reasons.contains(&c.verdict.reason.as_str()) {
                reasons.push(&c.verdict.reason);
            }
        }
        tag.map(|tag| (tag, reasons.join("; ")))
    }

    /// What the identity as a whole asks for: its most demanding credential's action.
    pub fn action(&self) -> Action {
        let rank = |a: Action| match a {
            Action::Keep => 0,
            Action::Rotate => 1,
            Action::Recover => 2,
            Action::Skip => 3,
        };
        self.credentials()
            .map(|c| c.verdict.state.action())
            .max_by_key(|a| rank(*a))
            .unwrap_or(Action::Keep)
    }

    /// The identity's state: that of its most urgent credential.
    pub fn state(&self) -> State {
        self.credentials()
            .map(|c| c.verdict.state)
            .max_by_key(|s| s.urgency())
            .unwrap_or(State::Healthy)
    }
}

/// What every report of a fleet begins with: where it is, the instant it is judged at, its CA,
/// the policy in force and what an operator should hear first. Known before any identity is
/// read.
#[derive(Debug)]
pub struct Scope {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub ca: Ca,
    pub policy: Policy,
    /// Where the policy in force came from.
    pub policy_source: policy::Source,
    /// What an operator should hear before reading the rest (a service name in the policy
    /// that looks mistyped, a CA key others can read): stderr and the reports.
    pub warnings: Vec<String>,
}

/// The whole fleet as of one instant, held in memory: what a writing command acts on. The read
/// commands never hold it; they stream the same identities ([`stream`]).
#[derive(Debug)]
pub struct Survey {
    pub scope: Scope,
    pub identities: Vec<Identity>,
    pub issues: Vec<Issue>,
    /// Hidden entries (names starting with a dot) under `nodes/` and its nodes, ignored.
    pub hidden: usize,
}

/// What the survey asks of the operator, worst first (maps onto exit codes 4, 3, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    None,
    WorkDue,
    RecoverOrProblem,
}

impl Scope {
    /// Opens the fleet at `root` as of `as_of`: its CA, its policy and its node directories.
    /// The service names of the whole fleet are listed (names only) when the policy names
    /// services to check them against, or when `services` asks for them (a `--service` filter
    /// to check before anything is shown).
    pub fn open(root: &Path, as_of: DateTime<Utc>, services: bool) -> Result<Opened> {
        let root = open_root(root)?;
        let ca = ca::load(&root)?;
        let loaded = policy::load(&root)?;
        let nodes = scan::nodes(&root)?;
        let names = (services || loaded.names_services())
            .then(|| scan::service_names(&root, &nodes.nodes));
        let mut warnings = match &names {
            Some(names) => loaded.warnings(&names.iter().map(String::as_str).collect()),
            None => Vec::new(),
        };
        warnings.extend(ca.key.warning(&root.join("ca/ca.key")));
        warnings.extend(
            crate::trust::check(&root)
                .into_iter()
                .map(|u| format!("{u}; writing commands refuse to run until it is fixed")),
        );
        warnings.extend(crate::out::metrics_file_warning(&loaded.policy, &root));
        Ok(Opened {
            scope: Scope {
                root,
                as_of,
                ca,
                policy: loaded.policy,
                policy_source: loaded.source,
                warnings,
            },
            nodes,
            service_names: names,
        })
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            policy: &self.policy,
            ca_not_after: self.ca.not_after,
            now: self.as_of,
        }
    }

    /// The file a credential of the identity `node`/`service` is read from.
    pub fn path_of(&self, node: &str, service: &str, kind: Kind) -> PathBuf {
        let file = match kind {
            Kind::Cert => scan::CERT_FILE,
            Kind::Token => scan::TOKEN_FILE,
        };
        let parts = ["nodes", node, service, file];
        let mut path = PathBuf::with_capacity(
            self.root.as_os_str().len() + parts.iter().map(|p| p.len() + 1).sum::<usize>(),
        );
        path.push(&self.root);
        path.extend(parts);
        path
    }
}

/// A fleet opened: its scope, its node directories, and the service names of the whole fleet
/// when they were asked for.
#[derive(Debug)]
pub struct Opened {
    pub scope: Scope,
    pub nodes: scan::Nodes,
    pub service_names: Option<BTreeSet<String>>,
}

impl Survey {
    /// Surveys the fleet at `root` as of `as_of`, every identity held in memory.
    pub fn take(root: &Path, as_of: DateTime<Utc>) -> Result<Survey> {
        let Opened { scope, nodes, .. } = Scope::open(root, as_of, false)?;
        let (identities, listed) = stream::each(&scope, nodes, &|_, _| true, |flow| {
            let identities: Vec<Identity> = flow.by_ref().collect();
            (identities, flow.listed())
        });
        Ok(Survey {
            scope,
            identities,
            issues: listed.issues,
            hidden: listed.hidden,
        })
    }

    /// The held identities as a report takes them (a writing command's plan, `demo`'s table).
    pub fn judged(&self) -> Judged<'_> {
        Judged::held(
            &self.scope,
            self.identities.clone(),
            self.issues.clone(),
            self.hidden,
        )
    }
}

/// Streams the fleet at `root` as of `as_of` to `consume`, narrowed by `filter`: the read
/// commands' survey, whose memory does not grow with the fleet. A `--node` or `--service` that
/// names nothing in the fleet is refused before `consume` is called.
pub fn read<R>(
    root: &Path,
    as_of: DateTime<Utc>,
    filter: Option<(&Filter, Grain)>,
    consume: impl FnOnce(&Scope, &mut Judged<'_>) -> R,
) -> Result<R> {
    let services = filter.is_some_and(|(f, _)| !f.services.is_empty());
    let Opened {
        scope,
        nodes,
        service_names,
    } = Scope::open(root, as_of, services)?;
    if let Some((filter, _)) = filter {
        filter.check_names(&scope.root, &nodes.nodes, service_names.as_ref())?;
    }
    let wanted = |node: &str, service: &str| filter.is_none_or(|(f, _)| f.names(node, service));
    Ok(stream::each(&scope, nodes, &wanted, |flow| {
        let mut judged = Judged::live(&scope, flow, filter);
        consume(&scope, &mut judged)
    }))
}

/// What a fleet root holds (docs/design.md §1), as messages name it: (entry, whether it is a
/// directory).
const ROOT_ENTRIES: [(&str, bool); 3] = [("ca", true), ("nodes", true), ("rekey.toml", false)];

/// How many entries of a directory are looked at for a fleet root one level down.
const CHILDREN_LOOKED_AT: usize = 1000;

/// The fleet root at `root`, canonical. A directory that holds none of `ca/`, `nodes/` and
/// `rekey.toml` is refused before anything else happens (a writing command would take its lock
/// there): the error names `--root` and every fleet root nearby, in an ancestor (the nearest
/// first) or an immediate subdirectory, that holds `nodes/` or `rekey.toml`.
pub fn open_root(root: &Path) -> Result<PathBuf> {
    let canonical = std::fs::canonicalize(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))?;
    if !root_entries(&canonical).is_empty() {
        return Ok(canonical);
    }
    let mut message = format!(
        "{} is not a fleet root: it holds no ca/, nodes/ or rekey.toml (run in the fleet root \
         or pass --root DIR)",
        canonical.display()
    );
    for (dir, found) in nearby_roots(&canonical) {
        let shown = dir.display();
        message.push_str(&format!("; found {found} in {shown}: try --root {shown}"));
    }
    anyhow::bail!(message)
}

/// The entries of a fleet root that `dir` holds, as `ca/`, `nodes/`, `rekey.toml`.
fn root_entries(dir: &Path) -> Vec<String> {
    ROOT_ENTRIES
        .iter()
        .filter(|(name, is_dir)| {
            std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_dir() == *is_dir)
        })
        .map(|(name, is_dir)| format!("{name}{}", if *is_dir { "/" } else { "" }))
        .collect()
}

/// Directories near `dir` that look like fleet roots (they hold `nodes/` or `rekey.toml`), with
/// what they hold in words (`nodes/ and rekey.toml`): ancestors nearest first, then immediate
/// subdirectories by name; three at most.
fn nearby_roots(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .take(CHILDREN_LOOKED_AT)
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| e.path())
        .collect();
    children.sort();
    dir.ancestors()
        .skip(1)
        .map(Path::to_path_buf)
        .chain(children)
        .filter_map(|candidate| {
            let found = root_entries(&candidate);
            let is_root = found.iter().any(|e| e == "nodes/" || e == "rekey.toml");
            is_root.then(|| (candidate, in_words(&found)))
        })
        .take(3)
        .collect()
}

/// `a`, `a and b`, `a, b and c`.
fn in_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub(crate) fn assess(identity: &inspect::Inspected, ctx: &Context<'_>) -> Identity {
    let renewal = ctx.policy.renewal(&identity.service);
    let (cert_verdict, token_verdict) = classify::classify(identity, ctx);
    let build =
        |kind, cred: &Option<inspect::Credential>, verdict: Option<Verdict>, self_rotates| {
            cred.as_ref().zip(verdict).map(|(c, verdict)| Assessed {
                kind,
                verdict,
                window: c.facts.as_ref().ok().copied(),
                sha256: c.sha256,
                self_rotates,
                key_alg: c.key_alg,
                names: c.names.clone(),
            })
        };
    Identity {
        node: identity.node.clone(),
        service: identity.service.clone(),
        dir: None,
        cert: build(
            Kind::Cert,
            &identity.cert,
            cert_verdict,
            renewal.self_renews_cert,
        ),
        token: build(
            Kind::Token,
            &identity.token,
            token_verdict,
            renewal.self_rotates_token,
        ),
    }
}
