//! Hooks earlier writing runs left pending, as the monitor's outputs show them: a line of the
//! status summary, the status JSON's `pending_hooks`. Values only: `status` reads them from the
//! run store (the journal's own reader) and hands them here; `None` when this user may not read
//! the run store.

use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::aside::Aside;
use crate::count::count;

/// One pending hook call (`rekey hooks list` shows the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingHook {
    pub(crate) run_id: String,
    pub(crate) call: u32,
    /// `deploy` or `post`.
    pub(crate) kind: String,
    /// `nodes/<node>/<service>`; `None` for a post hook.
    pub(crate) identity: Option<String>,
    /// Where the hook comes from (`rekey.toml services.kms.reload`, `--deploy-hook`, …).
    pub(crate) source: String,
    /// How its last attempt ended: `failed`, `timed out` or `never ran`.
    pub(crate) last_error: String,
}

/// The hook calls earlier runs left pending, oldest run first: set aside as they are read (a
/// run whose every deploy hook failed leaves one per identity), counted as they come.
#[derive(Debug)]
pub(crate) struct Pending {
    hooks: Aside<PendingHook>,
    /// Those whose last attempt failed or timed out (the rest never ran).
    failed: usize,
}

impl Pending {
    /// Calls set aside in the temporary directory past the first few.
    pub(crate) fn new() -> Pending {
        Pending {
            hooks: Aside::new(None, 256),
            failed: 0,
        }
    }

    pub(crate) fn push(&mut self, hook: PendingHook) {
        if hook.last_error != "never ran" {
            self.failed += 1;
        }
        self.hooks.push(hook);
    }

    /// Makes the calls readable, once all are pushed.
    pub(crate) fn close(&mut self) {
        self.hooks.flush();
    }

    fn first(&self) -> Option<PendingHook> {
        self.hooks.read().next().and_then(Result::ok)
    }
}

/// The status JSON's `pending_hooks`: the count, then each call read back as it is written.
#[derive(Serialize)]
pub(crate) struct PendingJson<'a> {
    count: usize,
    #[serde(serialize_with = "each_read_back")]
    hooks: &'a Aside<PendingHook>,
}

impl<'a> PendingJson<'a> {
    pub(crate) fn new(pending: &'a Pending) -> PendingJson<'a> {
        PendingJson {
            count: pending.hooks.len(),
            hooks: &pending.hooks,
        }
    }
}

fn each_read_back<S: Serializer>(hooks: &&Aside<PendingHook>, s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(hooks.len()))?;
    for hook in hooks.read() {
        seq.serialize_element(&hook.map_err(S::Error::custom)?)?;
    }
    seq.end()
}

/// The status summary's line about pending hooks: none when nothing is pending.
pub(crate) fn summary_line(pending: Option<&Pending>) -> Option<String> {
    let Some(pending) = pending else {
        return Some(
            "pending hooks: not known (the run store .rekey/ is not readable by you)".to_string(),
        );
    };
    let first = pending.first()?;
    Some(format!(
        "pending hooks: {} ({} failed or timed out; oldest run {}): rekey hooks list, \
         then rekey hooks retry",
        count(pending.hooks.len(), "call", "calls"),
        pending.failed,
        first.run_id
    ))
}
