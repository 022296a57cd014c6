//! Finds the identities under `<root>/nodes/<node>/<service>/` and reads their credential files.
//!
//! Never follows a symbolic link: a link where a node or service directory should be is reported,
//! and credential files are opened with `O_NOFOLLOW` (see [`fsio::read_credential`]). This module
//! reads bytes; it does not judge them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use walkdir::WalkDir;

use crate::fsio::{self, Slot};
use crate::names;

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";
pub const TOKEN_FILE: &str = "token.jwt";

/// A service directory found under `nodes/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    pub service: String,
    pub dir: PathBuf,
    /// Set when the directory entry is a symbolic link: the identity cannot be read.
    pub is_link: bool,
}

/// Something in the tree that is not an identity but that an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The path, relative to the root.
    pub path: String,
    pub message: String,
    /// A problem counts towards exit code 4; a note (an ignored empty directory) does not.
    pub is_problem: bool,
}

/// An identity's three files as read from disk.
#[derive(Debug)]
pub struct Files {
    pub cert: Slot,
    pub key: Slot,
    pub token: Slot,
}

/// Lists every service directory under `<root>/nodes`, sorted by (node, service), with the
/// issues found on the way.
pub fn find(root: &Path) -> Result<(Vec<Candidate>, Vec<Issue>)> {
    let nodes = root.join("nodes");
    let meta = std::fs::symlink_metadata(&nodes).with_context(|| {
        format!(
            "failed to read {}: is --root a fleet root?",
            nodes.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symbolic link is refused)",
            nodes.display()
        );
    }
    let (node_entries, mut issues) = subdirectories(root, &nodes, "node");
    let mut node_dirs = Vec::with_capacity(node_entries.len());
    for (node, (path, is_link)) in node_entries {
        if is_link {
            issues.push(problem(
                root,
                &path,
                "node directory is a symbolic link".to_string(),
            ));
        } else {
            node_dirs.push((node, path));
        }
    }
    // Nodes are listed in parallel: at 10^5 identities the listing is worth two cores too.
    let listed: Vec<_> = node_dirs
        .par_iter()
        .map(|(node, path)| (node, subdirectories(root, path, "service")))
        .collect();
    let mut candidates = Vec::new();
    for (node, (services, node_issues)) in listed {
        issues.extend(node_issues);
        candidates.extend(services.into_iter().map(|(service, dir)| Candidate {
            node: node.clone(),
            is_link: dir.1,
            service,
            dir: dir.0,
        }));
    }
    Ok((candidates, issues))
}

/// The entries of `dir` that are directories or links to anything, sorted by name, as
/// (name, (path, is_link)); invalid names and unreadable entries become issues. A link is
/// returned (the caller decides what it means) but never followed.
fn subdirectories(
    root: &Path,
    dir: &Path,
    kind: &str,
) -> (Vec<(String, (PathBuf, bool))>, Vec<Issue>) {
    let mut found = Vec::new();
    let mut issues = Vec::new();
    let walk = WalkDir::new(dir)
        .min_depth(1)
        .max_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err
                    .path()
                    .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
                issues.push(problem(root, &path, format!("cannot be read: {err}")));
                continue;
            }
        };
        let file_type = entry.file_type();
        if !file_type.is_dir() && !file_type.is_symlink() {
            continue; // other files are ignored (DESIGN §1)
        }
        let path = entry.path();
        match entry.file_name().to_str().filter(|n| names::is_valid(n)) {
            Some(name) => found.push((
                name.to_string(),
                (path.to_path_buf(), file_type.is_symlink()),
            )),
            None => issues.push(problem(root, path, format!("is not a valid {kind} name"))),
        }
    }
    (found, issues)
}

fn problem(root: &Path, path: &Path, message: String) -> Issue {
    Issue {
        path: relative(root, path),
        message,
        is_problem: true,
    }
}

/// `path` relative to `root`, for messages (lossy for non-UTF-8 names).
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Reads an identity's credential files (none, through a linked directory).
pub fn read(candidate: &Candidate) -> Files {
    if candidate.is_link {
        return Files {
            cert: Slot::Absent,
            key: Slot::Absent,
            token: Slot::Absent,
        };
    }
    Files {
        cert: fsio::read_credential(&candidate.dir.join(CERT_FILE)),
        key: fsio::read_credential(&candidate.dir.join(KEY_FILE)),
        token: fsio::read_credential(&candidate.dir.join(TOKEN_FILE)),
    }
}
