//! The one exit-code enum (DESIGN §5). Every command maps its outcome onto these.

/// How a rekey process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `status`/`plan`: nothing due, nothing wrong.
    Ok = 0,
    /// Fatal: nothing was written (bad root, CA unusable, lock held, bad plan).
    Fatal = 1,
    /// Usage error (clap's own exit code for bad arguments).
    Usage = 2,
    /// `status`/`plan`: work is due. Write commands: some identities failed, the rest were done.
    WorkDue = 3,
    /// `status`/`plan`/`rotate`: an identity needs `recover`, or a problem was found.
    Attention = 4,
}

impl From<crate::survey::Attention> for Exit {
    fn from(a: crate::survey::Attention) -> Exit {
        match a {
            crate::survey::Attention::None => Exit::Ok,
            crate::survey::Attention::WorkDue => Exit::WorkDue,
            crate::survey::Attention::RecoverOrProblem => Exit::Attention,
        }
    }
}
