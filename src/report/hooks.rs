//! Hooks earlier writing runs left pending, as the monitor's outputs show them: a line of the
//! status summary, the status JSON's `pending_hooks`. Values only: `status` reads them from the
//! run store (the journal's own reader) and hands them here; `None` when this user may not read
//! the run store.

use serde::Serialize;

use crate::count::count;

/// One pending hook call (`rekey hooks list` shows the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PendingHook {
    pub(crate) run_id: String,
    pub(crate) call: u32,
    /// `deploy` or `post`.
    pub(crate) kind: &'static str,
    /// `nodes/<node>/<service>`; `None` for a post hook.
    pub(crate) identity: Option<String>,
    /// Where the hook comes from (`rekey.toml services.kms.reload`, `--deploy-hook`, …).
    pub(crate) source: String,
    /// How its last attempt ended: `failed`, `timed out` or `never ran`.
    pub(crate) last_error: &'static str,
}

/// The status JSON's `pending_hooks`.
#[derive(Debug, Serialize)]
pub(crate) struct PendingJson<'a> {
    count: usize,
    hooks: &'a [PendingHook],
}

impl<'a> PendingJson<'a> {
    pub(crate) fn new(hooks: &'a [PendingHook]) -> PendingJson<'a> {
        PendingJson {
            count: hooks.len(),
            hooks,
        }
    }
}

/// The status summary's line about pending hooks: none when nothing is pending.
pub(crate) fn summary_line(pending: Option<&[PendingHook]>) -> Option<String> {
    let Some(pending) = pending else {
        return Some(
            "pending hooks: not known (the run store .rekey/ is not readable by you)".to_string(),
        );
    };
    let first = pending.first()?;
    let failed = pending.iter().filter(|p| p.last_error != "never ran").count();
    Some(format!(
        "pending hooks: {} ({failed} failed or timed out; oldest run {}): rekey hooks list, \
         then rekey hooks retry",
        count(pending.len(), "call", "calls"),
        first.run_id
    ))
}
