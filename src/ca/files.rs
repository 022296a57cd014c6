//! The files of `ca/`, and the stage of a CA rotation they show. Every path under `ca/` is
//! built here.
//!
//! | stage | `ca/ca.{crt,key}` | `ca/next/` | `ca/previous/` | `ca/bundle.pem` |
//! | --- | --- | --- | --- | --- |
//! | steady | signs | — | — | the CA (or absent) |
//! | begun | signs | the new CA | — | old + new |
//! | switched | the new CA, signs | — | the old CA | as `begin` left it (old + new) |
//!
//! After `finish` the stage is steady again, the bundle holds the new CA alone, and the old CA's
//! certificate (never its key) is kept as `ca/retired/<YYYYMMDD>-<key id, 16 hex>.crt`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::Digest;
use crate::problem::Problem;

/// Which CA of the fleet signed a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// `ca/ca.crt`: the CA that signs now.
    Active,
    /// `ca/next/ca.crt`: trusted since `ca begin`, signs after `ca switch`.
    Next,
    /// `ca/previous/ca.crt`: the CA `ca switch` replaced, trusted until `ca finish`.
    Previous,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Next => "next",
            Role::Previous => "previous",
        }
    }
}

/// Where a CA rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    /// One CA signs and is trusted.
    Steady,
    /// `ca begin` ran: the old CA signs; old and new are trusted.
    Begun,
    /// `ca switch` ran: the new CA signs; new and old are trusted.
    Switched,
}

impl Stage {
    /// The value of `rekey_ca_rotation_stage`.
    #[allow(dead_code, reason = "the metrics of a CA rotation are built on it next")]
    pub(crate) fn number(self) -> u8 {
        match self {
            Stage::Steady => 0,
            Stage::Begun => 1,
            Stage::Switched => 2,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::Steady => "steady",
            Stage::Begun => "begun",
            Stage::Switched => "switched",
        }
    }

    /// The stage [`Stage::name`] names.
    pub(crate) fn named(name: &str) -> Option<Stage> {
        [Stage::Steady, Stage::Begun, Stage::Switched]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// The CA directory of a fleet root.
#[derive(Debug, Clone)]
pub(crate) struct CaDir {
    dir: PathBuf,
}

/// One CA's pair of files.
#[derive(Debug, Clone)]
pub(crate) struct PairPaths {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl CaDir {
    pub(crate) fn of(root: &Path) -> CaDir {
        CaDir {
            dir: root.join("ca"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// `ca/ca.{crt,key}`: the CA that signs.
    pub(crate) fn active(&self) -> PairPaths {
        pair(&self.dir)
    }

    /// `ca/next/`: the CA a begun rotation will switch to.
    pub(crate) fn next_dir(&self) -> PathBuf {
        self.dir.join("next")
    }

    pub(crate) fn next(&self) -> PairPaths {
        pair(&self.next_dir())
    }

    /// `ca/previous/`: the CA a switched rotation still trusts.
    pub(crate) fn previous_dir(&self) -> PathBuf {
        self.dir.join("previous")
    }

    pub(crate) fn previous(&self) -> PairPaths {
        pair(&self.previous_dir())
    }

    /// The pair of files of the CA in `role`.
    pub(crate) fn of_role(&self, role: Role) -> PairPaths {
        match role {
            Role::Active => self.active(),
            Role::Next => self.next(),
            Role::Previous => self.previous(),
        }
    }

    /// `ca/bundle.pem`: every CA trusted, what each identity's `ca.pem` is kept equal to.
    pub(crate) fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }

    /// `ca/retired/`: certificates of CAs a rotation finished with.
    pub(crate) fn retired_dir(&self) -> PathBuf {
        self.dir.join("retired")
    }

    /// The file a retired CA's certificate is kept in: the day it was retired and its key id.
    pub(crate) fn retired(&self, on: DateTime<Utc>, key_id: &Digest) -> PathBuf {
        let id = key_id.hex();
        self.retired_dir()
            .join(format!("{}-{}.crt", on.format("%Y%m%d"), &id[..16]))
    }

    /// The stage the directory shows. A `next` or `previous` that is not a directory (a link
    /// included), or both at once, is refused: no writer leaves either.
    pub(crate) fn stage(&self) -> Result<Stage, Problem> {
        let next = self.present(&self.next_dir())?;
        let previous = self.present(&self.previous_dir())?;
        match (next, previous) {
            (false, false) => Ok(Stage::Steady),
            (true, false) => Ok(Stage::Begun),
            (false, true) => Ok(Stage::Switched),
            (true, true) => Err(Problem::new(format!(
                "both {} and {} exist: no rotation stage leaves both; restore one from the \
                 audit log (.rekey/audit.jsonl) or a backup before running rekey again",
                self.next_dir().display(),
                self.previous_dir().display()
            ))),
        }
    }

    fn present(&self, path: &Path) -> Result<bool, Problem> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(true),
            Ok(_) => Err(Problem::new(format!(
                "{} is not a directory (a symbolic link is refused)",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Problem::new(format!("{} cannot be inspected: {e}", path.display()))),
        }
    }
}

fn pair(dir: &Path) -> PairPaths {
    PairPaths {
        cert: dir.join("ca.crt"),
        key: dir.join("ca.key"),
    }
}

/// The text of a bundle: each CA certificate's PEM, in the order given, each ending in a newline.
pub(crate) fn bundle_text<'a>(certs: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for pem in certs {
        text.push_str(pem.trim_end_matches('\n'));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_is_what_the_directories_show() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CaDir::of(tmp.path());
        std::fs::create_dir(ca.path()).unwrap();
        assert_eq!(ca.stage().unwrap(), Stage::Steady);
        std::fs::create_dir(ca.next_dir()).unwrap();
        assert_eq!(ca.stage().unwrap(), Stage::Begun);
        std::fs::create_dir(ca.previous_dir()).unwrap();
        let both = ca.stage().unwrap_err().to_string();
        assert!(both.contains("both"), "{both}");
        std::fs::remove_dir(ca.next_dir()).unwrap();
        assert_eq!(ca.stage().unwrap(), Stage::Switched);
        std::fs::remove_dir(ca.previous_dir()).unwrap();
        std::os::unix::fs::symlink("/tmp", ca.previous_dir()).unwrap();
        let link = ca.stage().unwrap_err().to_string();
        assert!(link.contains("symbolic link"), "{link}");
    }

    #[test]
    fn a_retired_name_is_the_day_and_the_key_id() {
        use chrono::TimeZone;
        let ca = CaDir::of(Path::new("/r"));
        let on = Utc.with_ymd_and_hms(2027, 2, 1, 10, 0, 0).unwrap();
        let id = Digest::of(b"spki");
        let name = ca.retired(on, &id);
        let expected = format!("/r/ca/retired/20270201-{}.crt", &id.hex()[..16]);
        assert_eq!(name, PathBuf::from(expected));
    }

    #[test]
    fn a_bundle_is_each_certificate_once_on_its_own_lines() {
        assert_eq!(bundle_text(["A\n", "B"]), "A\nB\n");
        assert_eq!(bundle_text(["A\n\n"]), "A\n");
    }
}
