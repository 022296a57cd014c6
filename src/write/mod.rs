//! The write wing: one home for a writing run. [`WriteRun::begin`] checks the run date against
//! the clock, takes the writer lock, replays what an interrupted run left and installs the signal
//! handlers; [`WriteRun::start`] opens the run's directory and journal; [`Started::execute`] runs
//! the batches with progress, builds the report once, saves it, prints it and chooses the exit
//! code once. `apply`, `rotate`, `recover` and `rollback` only say *what* to change (a [`Work`]
//! and its items); none of them knows how a run is kept. A dry run is the same run with the sink
//! that writes nothing ([`Sink::Nowhere`], in its [`Settings`]): no command has a preview path of
//! its own.
//!
//! ```text
//! begin ─▶ (survey, decide) ─▶ start ─▶ batches: stage ▸ journal ▸ rename ▸ commit ─▶ report ─▶ exit
//! ```
//!
//! Floors, each using only those below it (docs/architecture.md):
//! 5. `run`, `started`, `rotating`, `applying`: the run's lifecycle, the only things commands touch
//! 4. `batches`, `hooks`, `pending`, `reap`, `prune`, `progress`, `signals`: the batch loop,
//!    hooks, retention, progress, signals
//! 3. `work`, `rotation`, `restore`, `narrow`: what each identity gets (staging), what a plan may
//!    rotate
//! 2. `journal`, `replay`: the write protocol and the crash replay
//! 1. `record`: what a run records in the store (journal entries, hook calls, the report, the
//!    audit log, the history of runs)

mod applying;
mod batches;
mod ca_stage;
mod ca_tree;
mod chosen;
pub mod hooks;
mod journal;
mod narrow;
mod pending;
mod progress;
mod prune;
mod reap;
mod record;
mod replay;
mod restore;
mod rotating;
mod rotation;
mod run;
mod signals;
mod started;
mod trust_files;
mod work;

pub(crate) use applying::{Applying, apply_streamed};
pub(crate) use batches::Items;
pub(crate) use ca_stage::ca_rollback;
pub(crate) use ca_tree::{CaChange, Tree as CaTree};
pub(crate) use chosen::{Choosing, Chosen, Met, Pick};
pub(crate) use pending::{
    PendingHook, Target as DiscardTarget, counts as hook_counts, each as each_pending_hook,
    list as pending_hooks,
};
pub use progress::Progress;
pub(crate) use record::audit::operator;
pub(crate) use record::audit::requested as audit_requested;
pub(crate) use record::history::{History, last_run};
pub(crate) use record::run_report::{FleetFacts, Notes, Outcome, Report, RunCommand};
pub(crate) use restore::{Replacements, Restore};
pub(crate) use rotating::{Counted, due_targets, rotate_due, rotate_streamed, run_streamed};
pub(crate) use rotation::Target;
pub use run::{Settings, Shown, Sink};
pub(crate) use run::{WriteRun, check_run_date, discard_hooks, preflight, retry_hooks};
pub(crate) use started::Streamed;
pub(crate) use trust_files::TrustFiles;
