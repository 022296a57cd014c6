//! Records what `rekey --version` says besides the release: the commit the binary was built from
//! and its crypto backend (docs/design.md §5). Never fails the build: outside a git checkout (a
//! crate tarball) or without git, the commit is `unknown`; `REKEY_BUILD_COMMIT` set in the
//! environment is used as it is (for packagers building from a tarball).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=REKEY_BUILD_COMMIT");
    let commit = match std::env::var("REKEY_BUILD_COMMIT") {
        Ok(given) if !given.is_empty() => given,
        _ => git_commit(&manifest).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=REKEY_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=REKEY_BUILD_CRYPTO={}", crypto(&manifest));
}

/// `git rev-parse --short=12 HEAD` of the checkout at `dir`, with `-dirty` when a tracked file
/// differs from it; `None` when `dir` is not the top of a checkout or git cannot say.
fn git_commit(dir: &Path) -> Option<String> {
    // Only the crate's own checkout: a tarball unpacked inside another repository must not
    // name that repository's commit.
    if !dir.join(".git").exists() {
        return None;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty())?;
    // Rebuilt when HEAD moves: HEAD itself, the branch it names, packed refs; and when the
    // sources change, for the dirty mark.
    let git_dir = git(&["rev-parse", "--git-dir"]).map(|d| dir.join(d));
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(|d| dir.join(d));
    let head_ref = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    let mut watched: Vec<PathBuf> = Vec::new();
    if let Some(git_dir) = &git_dir {
        watched.push(git_dir.join("HEAD"));
    }
    if let Some(common) = &common_dir {
        watched.push(common.join("packed-refs"));
        if let Some(head_ref) = head_ref.as_deref().filter(|r| r.starts_with("refs/")) {
            watched.push(common.join(head_ref));
        }
    }
    watched.extend(["src", "Cargo.toml"].map(|p| dir.join(p)));
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// The crypto backend and its version, from Cargo.lock (`aws-lc-rs 1.19.0`).
fn crypto(dir: &Path) -> String {
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|p| p.lines().any(|l| l.trim() == "name = \"aws-lc-rs\""))
        .and_then(|p| {
            p.lines()
                .find_map(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
        });
    match version {
        Some(v) => format!("aws-lc-rs {v}"),
        None => "aws-lc-rs".to_string(),
    }
}
