//! Where a fleet is and what every report of it begins with: the root (checked to be a fleet
//! root), the instant it is judged at, its CA, the policy in force and the warnings an operator
//! should hear first. Known before any identity is read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::ca::{self, Ca};
use crate::classify::{Context, Kind};
use crate::names::IdentityId;
use crate::policy::{self, Policy};
use crate::scan;

/// What every report of a fleet begins with: where it is, the instant it is judged at, its CA,
/// the policy in force and what an operator should hear first. Known before any identity is
/// read.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) root: PathBuf,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) ca: Ca,
    /// A CA rotation under way: its stage and the CA trusted beside `ca`.
    pub(crate) rotation: Option<ca::Rotation>,
    pub(crate) policy: Policy,
    /// Where the policy in force came from.
    pub(crate) policy_source: policy::Source,
    /// What an operator should hear before reading the rest (a service name in the policy
    /// that looks mistyped, a CA key others can read): stderr and the reports.
    pub(crate) warnings: Vec<String>,
}

impl Scope {
    /// Opens the fleet at `root` as of `as_of`: its CA, its policy and its node directories.
    /// The service names of the whole fleet are listed (names only) when the policy names
    /// services to check them against, or when `services` asks for them (a `--service` filter
    /// to check before anything is shown). `policy` is the policy a writing run already read
    /// (once per run); `None` reads `rekey.toml` here.
    pub(crate) fn open(
        root: &Path,
        as_of: DateTime<Utc>,
        services: bool,
        policy: Option<policy::Loaded>,
    ) -> Result<Opened> {
        let root = open_root(root)?;
        let ca = ca::load(&root)?;
        let rotation = ca::load_rotation(&root)?;
        let loaded = match policy {
            Some(loaded) => loaded,
            None => policy::load(&root)?,
        };
        let nodes = scan::nodes(&root)?;
        let names =
            (services || loaded.names_services()).then(|| scan::service_names(&root, &nodes.nodes));
        let mut warnings = match &names {
            Some(names) => loaded.warnings(&names.iter().map(String::as_str).collect()),
            None => Vec::new(),
        };
        warnings.extend(ca.key.warning(&crate::ca::CaDir::of(&root).active().key));
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
                rotation,
                policy: loaded.policy,
                policy_source: loaded.source,
                warnings,
            },
            nodes,
            service_names: names,
        })
    }

    /// The stage of the fleet's CA rotation.
    pub(crate) fn stage(&self) -> ca::Stage {
        self.rotation.as_ref().map_or(ca::Stage::Steady, |r| r.stage)
    }

    /// The CAs a credential may verify against.
    pub(crate) fn trusted(&self) -> ca::Trusted<'_> {
        ca::Trusted {
            active: &self.ca,
            rotation: self.rotation.as_ref(),
        }
    }

    pub(crate) fn context(&self) -> Context<'_> {
        Context {
            policy: &self.policy,
            ca_not_after: self.ca.not_after,
            now: self.as_of,
        }
    }

    /// The file a credential of the identity `id` is read from.
    pub(crate) fn path_of(&self, id: &IdentityId, kind: Kind) -> PathBuf {
        let file = match kind {
            Kind::Cert => scan::CERT_FILE,
            Kind::Token => scan::TOKEN_FILE,
        };
        let mut path = id.dir_in(&self.root);
        path.push(file);
        path
    }
}

/// A fleet opened: its scope, its node directories, and the service names of the whole fleet
/// when they were asked for.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) scope: Scope,
    pub(crate) nodes: scan::Nodes,
    pub(crate) service_names: Option<BTreeSet<String>>,
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
pub(crate) fn open_root(root: &Path) -> Result<PathBuf> {
    let canonical = crate::fsio::fleet_root(root)?;
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
