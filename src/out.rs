//! Where output goes: standard output, for data only (tables, plans, reports), buffered, and a
//! closed pipe is an error `main` ends quietly on; or a file, written atomically through an
//! unnamed temporary file; and the spool that streamed outputs set aside what they write last.
//! Progress, warnings and errors go to stderr.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::fsio::Like;

/// Where a read command's output goes: stdout, or a file replaced atomically. Made before the
/// fleet is read, so that a file that could not be written is refused at once, not after the
/// survey.
pub(crate) struct Destination<'a>(Option<(Target<'a>, Spool)>);

/// Who named an output file: the rules are the same, the messages say whom to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// `-o FILE` on the command line.
    Output,
    /// The policy's `metrics_file` (docs/design.md §4).
    MetricsFile,
}

impl Asker {
    fn flag(self) -> &'static str {
        match self {
            Asker::Output => "-o",
            Asker::MetricsFile => "metrics_file",
        }
    }

    /// What to do about a file refused.
    fn fix(self) -> &'static str {
        match self {
            Asker::Output => "(or - for stdout)",
            Asker::MetricsFile => "(change metrics_file in rekey.toml, or remove it)",
        }
    }
}

/// An output file found fit: a regular file or none yet, outside the fleet, in a directory a
/// file can be made in. The one home of the rules `-o` and `metrics_file` share
/// (docs/design.md §5): a link, a device, a pipe, a socket or a directory at `path` is refused,
/// never replaced (`-o /dev/null` run as root would otherwise leave a regular file in its
/// place) nor written through (a link in a shared directory could point anywhere); a file of
/// the fleet at `root` (its nodes, CA, policy or run records, links and `..` resolved) is
/// refused: output must never land on a credential. The new file keeps the mode and owner of
/// the one it replaces, as it is when the output is written ([`Target::write`] looks again).
#[derive(Debug, Clone)]
pub struct Target<'a> {
    path: &'a Path,
    named: Asker,
}

/// Whether [`Target::check`] tries to make a file in the target's directory: a writer does; a
/// reader that only warns (`status` about `metrics_file`) may not be the user who writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    TryCreate,
    LookOnly,
}

impl<'a> Target<'a> {
    pub(crate) fn check(path: &'a Path, root: &Path, named: Asker, probe: Probe) -> Result<Target<'a>> {
        let target = Target { path, named };
        target.like()?;
        if let Some(part) = in_fleet(path, root) {
            bail!(
                "{} is in the fleet ({}): {} never writes over the fleet's own files; name a \
                 file outside it {}",
                path.display(),
                part.display(),
                named.flag(),
                named.fix()
            );
        }
        if probe == Probe::TryCreate {
            let dir = crate::fsio::beside(path);
            crate::fsio::can_create_in(dir).map_err(|err| {
                anyhow::anyhow!(
                    "cannot write {}: no file can be made in {}: {err}",
                    path.display(),
                    dir.display()
                )
            })?;
        }
        Ok(target)
    }

    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    /// Replaces the file atomically with what `fill` writes, after looking at it again: a mode
    /// tightened during the run is kept, and a link or a pipe put there meanwhile is refused,
    /// not replaced.
    pub(crate) fn write(&self, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        let like = self.like()?;
        crate::fsio::write_atomic_like(self.path, &like, fill)
    }

    /// What the file is, to be replaced by a regular file: none yet, or a regular file (whose
    /// permission bits and owner the new one takes); anything else is refused.
    fn like(&self) -> Result<Like> {
        let (path, flag, fix) = (self.path, self.named.flag(), self.named.fix());
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            bail!(
                "{} ends with /: {flag} names a regular file to replace {fix}",
                path.display()
            );
        }
        Ok(match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Like::New(0o644),
            Err(err) => bail!("cannot write {}: {err}", path.display()),
            // A file another user owns, or any user may write, is theirs to rewrite after rekey
            // wrote it (a review page, a report, metrics read by a monitor): never replaced,
            // and never handed back to them.
            Ok(meta) if meta.is_file() && meta.uid() != rustix::process::geteuid().as_raw() => {
                bail!(
                    "{} belongs to uid {}, not to the user rekey runs as: its owner could rewrite \
                     what rekey wrote there; {flag} names a file of your own to replace {fix}",
                    path.display(),
                    meta.uid()
                )
            }
            Ok(meta) if meta.is_file() && meta.mode() & 0o002 != 0 => bail!(
                "{} can be written by any user, who could rewrite what rekey wrote there: take \
                 that away (chmod o-w), or give {flag} another file {fix}",
                path.display()
            ),
            Ok(meta) if meta.is_file() => Like::Replaced {
                mode: meta.mode() & 0o777,
                uid: meta.uid(),
                gid: meta.gid(),
            },
            Ok(meta) => bail!(
                "{} is {}: {flag} names a regular file to replace {fix}",
                path.display(),
                kind_of(&meta.file_type())
            ),
        })
    }
}

impl<'a> Destination<'a> {
    /// Stdout for `None`; a file must pass [`Target::check`]. The spool the output is made in
    /// is made here too (a `TMPDIR` that takes no file is refused as early).
    pub(crate) fn check(path: Option<&'a Path>, root: &Path) -> Result<Destination<'a>> {
        let Some(path) = path else {
            return Ok(Destination(None));
        };
        let target = Target::check(path, root, Asker::Output, Probe::TryCreate)?;
        Ok(Destination(Some((target, Spool::new()?))))
    }

    /// Writes the output as `render` makes it: to stdout as it goes, or to the file. For a
    /// file, the output is made first in an unnamed temporary file ([`Spool`], gone however the
    /// process ends) and copied into place at the end, so that a run stopped midway
    /// (`timeout`, systemd) leaves nothing beside the target.
    pub(crate) fn deliver(self, render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        match self.0 {
            None => emit_with(|w| render(w)),
            Some((target, mut spool)) => {
                render(spool.writer())?;
                // Copying into place, syncing and renaming take a moment for a large output: a
                // `timeout` or Ctrl-C then waits for the rename rather than leave a temporary
                // file beside the target.
                signals_deferred(|| target.write(|w| spool.copy_to(&mut &mut *w)))
            }
        }
    }
}

/// The policy's `metrics_file` for the fleet at `root`, checked as `-o` is ([`Target::check`]);
/// `None` when the policy names none.
pub(crate) fn metrics_file<'a>(
    path: Option<&'a Path>,
    root: &Path,
    probe: Probe,
) -> Result<Option<Target<'a>>> {
    path.map(|p| {
        Target::check(p, root, Asker::MetricsFile, probe)
            .with_context(|| format!("metrics_file {} cannot be written", p.display()))
    })
    .transpose()
}

/// The warning a reader (`status`, `plan`, `policy`) gives about a `metrics_file` that a
/// writing run would refuse to start with; `None` when it is fine or unset.
pub(crate) fn metrics_file_warning(policy: &crate::policy::Policy, root: &Path) -> Option<String> {
    let path = policy.metrics_path(root);
    metrics_file(path.as_deref(), root, Probe::LookOnly)
        .err()
        .map(|err| format!("{err:#}; every writing command refuses to start until it is fixed"))
}

/// The part of the fleet at `root` that `path` would be written in (`<root>/nodes`, `ca`,
/// `.rekey`, `hooks` or `rekey.toml`: a file there is the fleet's, or a command rekey runs as
/// its user), with links and `..` resolved; `None` when it is outside them, or
/// when the root or the file's directory cannot be resolved (then the survey or the write says
/// why).
fn in_fleet(path: &Path, root: &Path) -> Option<std::path::PathBuf> {
    let root = crate::fsio::fleet_root(root).ok()?;
    let file = std::fs::canonicalize(crate::fsio::beside(path))
        .ok()?
        .join(path.file_name()?);
    let first = file.strip_prefix(&root).ok()?.components().next()?;
    matches!(
        first.as_os_str().to_str(),
        Some("nodes" | "ca" | ".rekey" | "hooks" | "rekey.toml")
    )
    .then(|| root.join(first))
}

/// The signals that stop a run by default, deferred by [`signals_deferred`].
const STOPPING: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first stopping signal that came while deferred; 0 for none.
static DEFERRED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn defer(signal: libc::c_int) {
    use std::sync::atomic::Ordering;
    if DEFERRED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second signal does not wait (a sync that hangs on a dead network volume must stay
        // interruptible): the default action, now. Both calls are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Runs `f` with SIGINT, SIGTERM and SIGHUP deferred: the first that comes is delivered when `f`
/// has returned (with the action it had before, so an ignored SIGHUP stays ignored); a second
/// one stops the process at once.
fn signals_deferred<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::Ordering;
    // SAFETY: sigaction with a handler that only touches an atomic (or resets and re-raises),
    // and the previous actions saved to be put back.
    let mut before: [libc::sigaction; 3] = unsafe { std::mem::zeroed() };
    let handler = defer as extern "C" fn(libc::c_int);
    for (signal, old) in STOPPING.iter().zip(before.iter_mut()) {
        unsafe {
            libc::sigaction(*signal, std::ptr::null(), old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue; // ignored (`nohup`) stays ignored
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(*signal, &action, std::ptr::null_mut());
        }
    }
    let result = f();
    for (signal, old) in STOPPING.iter().zip(before.iter()) {
        unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
    }
    let signal = DEFERRED.swap(0, Ordering::SeqCst);
    if signal != 0 {
        unsafe { libc::raise(signal) };
    }
    result
}

/// What a file that is not a regular file is, for a message.
fn kind_of(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Writes data to stdout.
pub(crate) fn emit(text: &str) -> Result<()> {
    emit_with(|w| w.write_all(text.as_bytes()))
}

/// Streams data to stdout through a buffer.
pub(crate) fn emit_with(
    fill: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    fill(&mut out)
        .and_then(|()| out.flush())
        .context("failed to write to stdout")
}

/// Output set aside in an unnamed temporary file while a stream passes, for what must be
/// written after something that is known only at the end (the status table's column widths,
/// the metrics' families after the first): memory stays flat whatever the fleet's size. The
/// file is gone when the spool is dropped, even if the process is killed.
pub(crate) struct Spool {
    file: std::io::BufWriter<Named>,
}

/// The spool's file, whose write errors name the directory it is in (a full `TMPDIR` must not
/// read as a failure of the output).
struct Named {
    file: std::fs::File,
    dir: std::path::PathBuf,
}

impl Write for Named {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot write a temporary file in {} (set TMPDIR to a directory with room): {e}",
                    self.dir.display()
                ),
            )
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Spool {
    pub(crate) fn new() -> std::io::Result<Spool> {
        let file = tempfile::tempfile().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot make a temporary file in {} (set TMPDIR to a writable directory): {e}",
                    std::env::temp_dir().display()
                ),
            )
        })?;
        let dir = std::env::temp_dir();
        Ok(Spool {
            file: std::io::BufWriter::with_capacity(1 << 16, Named { file, dir }),
        })
    }

    /// A spool in `dir` rather than `TMPDIR`: for what decides what root writes, a directory
    /// only root can change.
    pub(crate) fn new_in(dir: &std::path::Path) -> std::io::Result<Spool> {
        let file = tempfile::tempfile_in(dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot make a temporary file in {}: {e}", dir.display()),
            )
        })?;
        Ok(Spool {
            file: std::io::BufWriter::with_capacity(
                1 << 16,
                Named {
                    file,
                    dir: dir.to_path_buf(),
                },
            ),
        })
    }

    pub(crate) fn writer(&mut self) -> &mut impl Write {
        &mut self.file
    }

    /// What was set aside, from the start, for reading back.
    pub(crate) fn read_back(self) -> std::io::Result<std::io::BufReader<std::fs::File>> {
        use std::io::Seek;
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?.file;
        file.rewind()?;
        Ok(std::io::BufReader::with_capacity(1 << 16, file))
    }

    /// The file of what was set aside, everything written to it (for readers that keep their
    /// own offset).
    pub(crate) fn into_file(self) -> std::io::Result<std::fs::File> {
        Ok(self.file.into_inner().map_err(|e| e.into_error())?.file)
    }

    /// Appends what was set aside to `w`.
    pub(crate) fn copy_to(self, w: &mut impl Write) -> std::io::Result<()> {
        std::io::copy(&mut self.read_back()?, w).map(|_| ())
    }
}
