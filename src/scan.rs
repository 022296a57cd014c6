//! Finds the identities under `<root>/nodes/<node>/<service>/` and reads their credential files.
//!
//! Never follows a symbolic link: a link where a node or service directory should be is reported,
//! and credential files are opened with `O_NOFOLLOW` (see [`fsio::read_credential`]). This module
//! reads bytes; it does not judge them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::fsio::{self, Slot};
use crate::names::{self, IdentityId};

pub(crate) const CERT_FILE: &str = "cert.pem";
pub(crate) const KEY_FILE: &str = "key.pem";
pub(crate) const TOKEN_FILE: &str = "token.jwt";

/// A service directory found under `nodes/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Made once, here, from the names listed (both valid).
    pub id: IdentityId,
    pub dir: PathBuf,
    /// Set when the directory entry is a symbolic link: the identity cannot be read.
    pub is_link: bool,
}

/// Something in the tree that is not an identity but that an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// The path, relative to the root.
    pub(crate) path: String,
    pub(crate) message: String,
    /// A problem counts towards exit code 4; a note (an ignored empty directory) does not.
    pub(crate) is_problem: bool,
}

/// The node directories under `nodes/`, listed before any identity is read.
#[derive(Debug, Default)]
pub struct Nodes {
    /// Sorted by name; links are not here (they are issues).
    pub nodes: Vec<Node>,
    pub(crate) issues: Vec<Issue>,
    /// Directories and links under `nodes/` whose names start with a dot (an NFS `.snapshot`, a
    /// `.git`): not names, not problems, ignored and counted (docs/design.md §1).
    pub(crate) hidden: usize,
}

/// A node directory.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

/// What one node directory holds: its service directories, sorted, as candidates.
#[derive(Debug, Default)]
pub struct Services {
    pub candidates: Vec<Candidate>,
    pub(crate) issues: Vec<Issue>,
    /// Hidden entries of the node, ignored and counted.
    pub(crate) hidden: usize,
}

/// An identity's three files as read from disk.
#[derive(Debug)]
pub struct Files {
    pub cert: Slot,
    pub key: Slot,
    pub token: Slot,
    /// Set when a writer was still renaming this identity's files after the readers' patience
    /// ran out: the files may be of two generations, and must not be judged.
    pub in_flight: Option<String>,
    /// The directory they were read in (device and inode): a writer acts on that one only.
    pub dir: Option<fsio::FileId>,
}

/// Lists the node directories under `<root>/nodes`, sorted, with the issues found on the way
/// (a node that is a link, an invalid name) and the hidden entries ignored. The services of each
/// node are listed later, node by node ([`services`]), so that a fleet is never listed whole.
pub fn nodes(root: &Path) -> Result<Nodes> {
    let nodes = names::nodes_dir(root);
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
    let listing = subdirectories(root, &nodes, "node");
    let mut found = Nodes {
        nodes: Vec::with_capacity(listing.entries.len()),
        issues: listing.issues,
        hidden: listing.hidden,
    };
    for entry in listing.entries {
        if entry.is_link {
            found.issues.push(problem(
                root,
                &entry.path,
                "node directory is a symbolic link".to_string(),
            ));
        } else {
            found.nodes.push(Node {
                name: entry.name,
                path: entry.path,
            });
        }
    }
    Ok(found)
}

/// The service directories of one node, sorted by name, as candidates, with the issues found
/// on the way and the hidden entries ignored.
pub fn services(root: &Path, node: &Node) -> Services {
    let listing = subdirectories(root, &node.path, "service");
    Services {
        candidates: listing
            .entries
            .into_iter()
            .map(|service| Candidate {
                id: IdentityId::new(&node.name, &service.name)
                    .expect("listed names are valid names"),
                dir: service.path,
                is_link: service.is_link,
            })
            .collect(),
        issues: listing.issues,
        hidden: listing.hidden,
    }
}

/// The distinct service names in the fleet, listed node by node on all cores and kept as names
/// only: what the policy's names and `--service` are checked against before anything is shown.
pub(crate) fn service_names(root: &Path, nodes: &[Node]) -> BTreeSet<String> {
    nodes
        .par_iter()
        .map(|node| {
            subdirectories(root, &node.path, "service")
                .entries
                .into_iter()
                .map(|e| e.name)
                .collect::<BTreeSet<_>>()
        })
        .reduce(BTreeSet::new, |mut a, b| {
            a.extend(b);
            a
        })
}

/// A directory, or a link to anything, with a valid name.
struct Entry {
    name: String,
    path: PathBuf,
    is_link: bool,
}

/// The directories and links of one directory.
struct Listing {
    /// Sorted by name.
    entries: Vec<Entry>,
    /// Invalid names and unreadable entries.
    issues: Vec<Issue>,
    /// Names that start with a dot: ignored.
    hidden: usize,
}

/// The entries of `dir` that are directories or links to anything, sorted by name; invalid
/// names and unreadable entries become issues, except hidden names (starting with a dot),
/// which are only counted. A link is returned (the caller decides what it means) but never
/// followed.
fn subdirectories(root: &Path, dir: &Path, kind: &str) -> Listing {
    let mut found = Vec::new();
    let mut issues = Vec::new();
    let mut hidden = 0;
    // read_dir, not walkdir: walkdir opens every entry that is a directory, even at its
    // maximum depth (five system calls per identity for nothing).
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(err) => {
            issues.push(problem(root, dir, format!("cannot be read: {err}")));
            return Listing {
                entries: found,
                issues,
                hidden,
            };
        }
    };
    for entry in read {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                issues.push(problem(root, dir, format!("cannot be read: {err}")));
                continue;
            }
        };
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(err) => {
                issues.push(problem(root, &entry.path(), format!("cannot be read: {err}")));
                continue;
            }
        };
        if !file_type.is_dir() && !file_type.is_symlink() {
            continue; // other files are ignored (docs/design.md §1)
        }
        let path = entry.path();
        let name = entry.file_name();
        match name.to_str().filter(|n| names::is_valid(n)) {
            Some(name) => found.push(Entry {
                name: name.to_string(),
                path,
                is_link: file_type.is_symlink(),
            }),
            None if name.as_encoded_bytes().starts_with(b".") => hidden += 1,
            None => issues.push(problem(root, &path, format!("is not a valid {kind} name"))),
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    issues.sort_by(|a, b| a.path.cmp(&b.path));
    Listing {
        entries: found,
        issues,
        hidden,
    }
}

fn problem(root: &Path, path: &Path, message: String) -> Issue {
    Issue {
        path: relative(root, path),
        message,
        is_problem: true,
    }
}

/// `path` relative to `root`, for messages (lossy for non-UTF-8 names).
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// How long, in all, a process's readers wait for writers to finish renaming identities' files
/// before reporting them as being rewritten. One budget for the whole process: a run that died
/// with its temporary files in place (until the next writer replays it) costs one wait, not one
/// per identity.
const PATIENCE: Duration = Duration::from_secs(10);

static WAIT_UNTIL: OnceLock<Instant> = OnceLock::new();

/// How long readers wait in silence: a live writer's renames are over in a moment, while a run
/// that died leaves its temporary files until the next writer replays it. After this, stderr
/// says once per process what they wait for.
const QUIET: Duration = Duration::from_millis(250);

static ANNOUNCED: Once = Once::new();

/// Reads an identity's credential files (none, through a linked directory) as one generation.
///
/// A writer replaces them one rename at a time (temporary `.rekey-new.<file>` over `<file>`), so a
/// reader can land between two renames. After reading, the directory is checked for temporary
/// files, then each name for the file that was read: when neither shows a writer at work, the
/// three reads saw the directory as it was at one instant with no rename under way, wholly old
/// or wholly new. Otherwise the identity is read again, and after [`PATIENCE`] it is reported as
/// being rewritten ([`Files::in_flight`]).
pub fn read(candidate: &Candidate) -> Files {
    let files = |cert, key, token, in_flight| Files {
        cert,
        key,
        token,
        in_flight,
        dir: None,
    };
    if candidate.is_link {
        return files(Slot::Absent, Slot::Absent, Slot::Absent, None);
    }
    let dir = match fsio::Dir::open(&candidate.dir) {
        Ok(dir) => dir,
        // Gone since it was listed: an empty identity, ignored.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return files(Slot::Absent, Slot::Absent, Slot::Absent, None);
        }
        Err(err) => {
            let why = if err.raw_os_error() == Some(libc::ELOOP) {
                "cannot be read: its directory became a symbolic link".to_string()
            } else {
                format!("cannot be read: its directory cannot be opened: {err}")
            };
            let unusable = || Slot::Unusable(why.clone());
            return files(unusable(), unusable(), unusable(), None);
        }
    };
    read_in(&dir, &candidate.id, &candidate.dir)
}

/// [`read`] for identity `id`, its directory (at `path`) already open as `dir` (a writer
/// opens it through a handle: `fsio::RootDir::identity`), a handle whose entries were not read
/// yet (its first listing does not rewind it).
pub(crate) fn read_in(dir: &fsio::Dir, id: &IdentityId, path: &Path) -> Files {
    let dir_id = dir.file_id();
    let files = |cert, key, token, in_flight| Files {
        cert,
        key,
        token,
        in_flight,
        dir: dir_id,
    };
    let names = [CERT_FILE, KEY_FILE, TOKEN_FILE];
    let mut pause = Duration::from_millis(1);
    let mut rewind = false;
    loop {
        let [(cert, cert_id, c), (key, key_id, k), (token, token_id, t)] =
            names.map(|name| dir.read_credential(name));
        // Open until the check below: the numbers it compares are these files' own.
        let _kept = (c, k, t);
        let listed = dir.entries(crate::fsio::TEMP_PREFIX, names, rewind).ok();
        rewind = true;
        let (temp, inodes) = match listed {
            Some(listed) => (listed.prefixed.into_iter().next(), listed.inodes),
            None => (None, None),
        };
        let dir_dev = dir_id.map(|(dev, _)| dev);
        if let Some(temp) = &temp
            && Writer::of(path, temp) == Writer::None
        {
            let why = format!(
                "cannot be judged: {} is a temporary file that no unfinished rekey run made (left \
                 behind, or put there by someone else): remove it",
                path.join(temp).display(),
            );
            return files(cert, key, token, Some(why));
        }
        // (the reason the identity gets if the wait runs out, what shows a writer at work)
        let busy = match temp {
            Some(temp) => Some((
                format!(
                    "is being rewritten by a rekey run that has not finished ({temp} is \
                     present): wait for it, or run `rekey rotate` to finish an interrupted one"
                ),
                format!("{} is present", path.join(&temp).display()),
            )),
            // A name that could not be opened (a link, a socket) has nothing to compare.
            None => names
                .iter()
                .zip([(&cert, cert_id), (&key, key_id), (&token, token_id)])
                .zip(inodes.map_or([None; 3], |i| i.map(Some)))
                .filter(|((_, (slot, id)), _)| id.is_some() || matches!(slot, Slot::Absent))
                // The listing after the reads names each file as read: nothing more to ask.
                // Otherwise (a file mounted over its name lists the inode beneath) the entry
                // is looked at itself.
                .filter(|((_, (_, id)), listed)| match (id, listed) {
                    (Some((dev, ino)), Some(Some(listed))) if Some(*dev) == dir_dev => {
                        ino != listed
                    }
                    (None, Some(None)) => false,
                    _ => true,
                })
                .find(|((name, (_, id)), _)| dir.entry(name) != *id)
                .map(|((name, _), _)| {
                    (
                        format!("is being rewritten ({name} changed while it was read)"),
                        format!("{name} changed while it was read"),
                    )
                }),
        };
        let Some((busy, sign)) = busy else {
            return files(cert, key, token, None);
        };
        let deadline = *WAIT_UNTIL.get_or_init(|| Instant::now() + PATIENCE);
        let now = Instant::now();
        if now >= deadline {
            return files(cert, key, token, Some(busy));
        }
        if now + PATIENCE >= deadline + QUIET {
            ANNOUNCED.call_once(|| {
                eprintln!(
                    "rekey: waiting for a rekey run that is rewriting {} ({sign}); up to {} s \
                     in all",
                    id.relative().display(),
                    PATIENCE.as_secs()
                );
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether a temporary file in an identity's directory is a writer's at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// A run that has not finished (or one rekey may not look at): wait for it.
    Unfinished,
    /// No run that has not finished made it: a leftover, or planted.
    None,
}

impl Writer {
    /// Who made `temp` (`.rekey-new.<run-id>.<file>`) in the identity's directory `path`: a run whose
    /// journal is under `<root>/.rekey/runs/<run-id>/` with no report yet. A name without a run
    /// id (as runs before journal version 2 made them) is a writer's while any run is unfinished.
    fn of(path: &Path, temp: &str) -> Writer {
        let Some(root) = path.ancestors().nth(3) else {
            return Writer::None;
        };
        let store = crate::store::Store::of(root);
        let stem = temp.strip_prefix(crate::fsio::TEMP_PREFIX).unwrap_or(temp);
        let run_id = [CERT_FILE, KEY_FILE, TOKEN_FILE]
            .iter()
            .find_map(|file| stem.strip_suffix(file)?.strip_suffix('.'))
            .filter(|id| !id.is_empty());
        let found = match run_id {
            Some(id) if id.contains('/') || id.starts_with('.') => false,
            Some(id) => store.run(id).may_be_unfinished(),
            None => match store.runs() {
                Ok(runs) => runs.iter().any(crate::store::RunDir::may_be_unfinished),
                Err(e) => e.chain().any(|cause| {
                    cause
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
                }),
            },
        };
        if found {
            Writer::Unfinished
        } else {
            Writer::None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A writer flips an identity between two generations with the journal's protocol
    /// (temporary files, then renames one by one) while a reader reads it over and over: every
    /// read is wholly one generation, and both are seen.
    #[test]
    fn a_reader_never_sees_two_generations_while_a_writer_renames() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("nodes/n/svc");
        std::fs::create_dir_all(&dir).unwrap();
        let run = root.path().join(".rekey/runs/R");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("journal.jsonl"), "").unwrap();
        let names = [CERT_FILE, KEY_FILE, TOKEN_FILE];
        for name in names {
            std::fs::write(dir.join(name), [0u8]).unwrap();
        }
        let stop = AtomicBool::new(false);
        let mut seen = [0usize; 2];
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut generation = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    generation ^= 1;
                    let temp = |name| dir.join(format!("{}R.{name}", crate::fsio::TEMP_PREFIX));
                    for name in names {
                        std::fs::write(temp(name), [generation]).unwrap();
                    }
                    for name in names {
                        std::fs::rename(temp(name), dir.join(name)).unwrap();
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
            });
            // Stops the writer however the reader's loop ends, a failed assertion included.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = Stop(&stop);
            let candidate = Candidate {
                id: IdentityId::new("n", "svc").unwrap(),
                dir: dir.clone(),
                is_link: false,
            };
            // At least 3,000 reads, and on until both generations have been read often (the
            // writer thread may start late on a loaded machine); a time bound all the same.
            let start = Instant::now();
            let mut reads = 0;
            while (reads < 3000 || seen.iter().any(|n| *n < 100))
                && start.elapsed() < Duration::from_secs(30)
            {
                reads += 1;
                let files = read(&candidate);
                assert_eq!(files.in_flight, None);
                let generation = [files.cert, files.key, files.token].map(|slot| match slot {
                    Slot::Present(bytes) => bytes[0],
                    other => panic!("{other:?}"),
                });
                assert!(
                    generation.iter().all(|g| *g == generation[0]),
                    "a torn read: {generation:?}"
                );
                seen[usize::from(generation[0])] += 1;
            }
        });
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }
}
