//! Finds the identities under `<root>/nodes/<node>/<service>/` and reads their credential files.
//!
//! Never follows a symbolic link: a link where a node or service directory should be is reported,
//! and credential files are opened with `O_NOFOLLOW` (see [`fsio::read_credential`]). This module
//! reads bytes; it does not judge them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
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
    let mut candidates = Vec::new();
    let mut issues = Vec::new();
    let mut walk = WalkDir::new(&nodes)
        .min_depth(1)
        .max_depth(2)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().map_or_else(|| nodes.clone(), Path::to_path_buf);
                issues.push(problem(root, &path, format!("cannot be read: {err}")));
                continue;
            }
        };
        let path = entry.path();
        let file_type = entry.file_type();
        if !file_type.is_dir() && !file_type.is_symlink() {
            continue; // other files are ignored (DESIGN §1)
        }
        let Some(name) = entry.file_name().to_str().filter(|n| names::is_valid(n)) else {
            let kind = if entry.depth() == 1 {
                "node"
            } else {
                "service"
            };
            issues.push(problem(root, path, format!("is not a valid {kind} name")));
            if entry.depth() == 1 && file_type.is_dir() {
                walk.skip_current_dir();
            }
            continue;
        };
        if entry.depth() == 1 {
            if file_type.is_symlink() {
                issues.push(problem(
                    root,
                    path,
                    "node directory is a symbolic link".to_string(),
                ));
            }
            continue;
        }
        let node = parent_name(path);
        candidates.push(Candidate {
            node,
            service: name.to_string(),
            dir: path.to_path_buf(),
            is_link: file_type.is_symlink(),
        });
    }
    Ok((candidates, issues))
}

fn parent_name(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .expect("a service directory's parent is a node whose name was checked as UTF-8")
        .to_string()
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
