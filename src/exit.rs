//! The one exit-code enum (docs/design.md §5). Every command maps its outcome onto these.

/// How a rekey process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `status`/`plan`: nothing due, nothing wrong.
    Ok = 0,
    /// Fatal: nothing was written (bad root, CA unusable, lock held, bad plan).
    Fatal = 1,
    /// Usage error: clap's own exit code for bad arguments, and [`UsageError`].
    Usage = 2,
    /// `status`/`plan`: work is due. Write commands: some identities failed, the rest were done.
    WorkDue = 3,
    /// `status`/`plan`: an identity needs `recover`, or a problem was found; `rotate`/`apply`:
    /// the run went well but leaves such identities for a person.
    Attention = 4,
}

impl Exit {}

/// An error in what the command line asked (a selector that matches nothing, a run date ahead
/// of the clock): the process exits 2, nothing written.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
