//! The read side end to end: CA, policy, scan, inspect and classify every identity of a root,
//! in parallel, into one sorted [`Survey`] that `status` and `plan` render.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::ca::{self, Ca};
use crate::classify::{self, Action, Context, Kind, State, Verdict};
use crate::inspect::{self, Window};
use crate::keys::KeyAlg;
use crate::policy::{self, Policy};
use crate::scan::{self, Issue};

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

    /// The identity's state: that of its most urgent credential.
    pub fn state(&self) -> State {
        self.credentials()
            .map(|c| c.verdict.state)
            .max_by_key(|s| s.urgency())
            .unwrap_or(State::Healthy)
    }
}

/// The whole fleet as of one instant.
#[derive(Debug)]
pub struct Survey {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    pub ca: Ca,
    pub policy: Policy,
    /// Where the policy in force came from.
    pub policy_source: policy::Source,
    pub identities: Vec<Identity>,
    pub issues: Vec<Issue>,
    /// Hidden entries (names starting with a dot) under `nodes/` and its nodes, ignored.
    pub hidden: usize,
    /// What an operator should hear before reading the rest (a service name in the policy
    /// that looks mistyped, a CA key others can read): stderr and the reports.
    pub warnings: Vec<String>,
}

/// What the survey asks of the operator, worst first (maps onto exit codes 4, 3, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    None,
    WorkDue,
    RecoverOrProblem,
}

impl Survey {
    /// The file a credential of `identity` is read from.
    pub fn path_of(&self, identity: &Identity, kind: Kind) -> PathBuf {
        let file = match kind {
            Kind::Cert => scan::CERT_FILE,
            Kind::Token => scan::TOKEN_FILE,
        };
        self.root
            .join("nodes")
            .join(&identity.node)
            .join(&identity.service)
            .join(file)
    }

    /// Surveys the fleet at `root` as of `as_of`.
    pub fn take(root: &Path, as_of: DateTime<Utc>) -> Result<Survey> {
        let root = open_root(root)?;
        let ca = ca::load(&root)?;
        let loaded = policy::load(&root)?;
        let scan::Found {
            candidates,
            mut issues,
            hidden,
        } = scan::find(&root)?;
        let services = candidates.iter().map(|c| c.service.as_str()).collect();
        let mut warnings = loaded.warnings(&services);
        warnings.extend(ca.key.warning(&root.join("ca/ca.key")));
        let (policy, policy_source) = (loaded.policy, loaded.source);
        let ctx = Context {
            policy: &policy,
            ca_not_after: ca.not_after,
            now: as_of,
        };
        // Each candidate becomes an identity or an issue in one parallel pass; the bytes read
        // and the inspection's intermediate values are dropped as soon as it is judged.
        let judged: Vec<Result<Identity, Issue>> = candidates
            .par_iter()
            .map(|c| {
                let issue = |message: &str, is_problem| {
                    Err(Issue {
                        path: scan::relative(&root, &c.dir),
                        message: message.to_string(),
                        is_problem,
                    })
                };
                if c.is_link {
                    return issue("service directory is a symbolic link", true);
                }
                let inspected = inspect::inspect(c, &scan::read(c), &ca);
                if inspected.is_empty() {
                    return issue("has no cert.pem or token.jwt: ignored", false);
                }
                Ok(assess(&inspected, &ctx))
            })
            .collect();
        drop(candidates);
        let mut identities = Vec::with_capacity(judged.len());
        for j in judged {
            match j {
                Ok(identity) => identities.push(identity),
                Err(issue) => issues.push(issue),
            }
        }
        Ok(Survey {
            root,
            as_of,
            ca,
            policy,
            policy_source,
            identities,
            issues,
            hidden,
            warnings,
        })
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            policy: &self.policy,
            ca_not_after: self.ca.not_after,
            now: self.as_of,
        }
    }

    /// The operator attention the fleet needs; `warn` also counts credentials that keep but
    /// expire within it as work due (`status --warn-days`).
    pub fn attention(&self, warn: Option<chrono::TimeDelta>) -> Attention {
        let mut worst = Attention::None;
        if self.issues.iter().any(|i| i.is_problem) {
            return Attention::RecoverOrProblem;
        }
        for c in self.identities.iter().flat_map(Identity::credentials) {
            let level = match c.verdict.state.action() {
                Action::Recover | Action::Skip => return Attention::RecoverOrProblem,
                Action::Rotate => Attention::WorkDue,
                Action::Keep => match (warn, c.window) {
                    (Some(warn), Some(w)) if w.not_after <= self.as_of + warn => Attention::WorkDue,
                    _ => Attention::None,
                },
            };
            worst = worst.max(level);
        }
        worst
    }
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

fn assess(identity: &inspect::Inspected, ctx: &Context<'_>) -> Identity {
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
