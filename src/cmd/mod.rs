//! One file per subcommand, all on one floor: each takes its validated options (made once from
//! the command line by the binary), does its work through the library, writes its output and
//! returns the exit code. No subcommand calls another, except `demo`, which shows `rotate`.

pub mod apply;
pub mod ca;
pub mod ca_status;
pub mod demo;
pub mod hooks;
pub mod plan;
pub mod policy;
pub mod prune;
pub mod recover;
pub mod rollback;
pub mod rotate;
pub mod runs;
pub mod status;

pub use crate::classify::State;
pub(crate) use crate::out::{Destination, emit};
pub use crate::select::{ExitRule, Filter};

use anyhow::Result;

use crate::exit::Exit;

/// A validated invocation: which subcommand, with what.
#[derive(Debug)]
pub enum Invocation {
    Status(status::Options),
    Plan(plan::Options),
    Policy(policy::Options),
    Apply(apply::Options),
    Rotate(rotate::Options),
    Recover(recover::Options),
    Rollback(rollback::Options),
    Runs(runs::Options),
    Prune(prune::Options),
    HooksRetry(hooks::Options),
    HooksList(hooks::ListOptions),
    HooksDiscard(hooks::DiscardOptions),
    Demo(demo::Options),
    CaStage(ca::Options),
    CaStatus(ca_status::Options),
}

/// Runs one subcommand.
pub fn run(invocation: Invocation) -> Result<Exit> {
    crate::token::install_provider();
    match invocation {
        Invocation::Status(o) => status::status(&o),
        Invocation::Plan(o) => plan::plan(&o),
        Invocation::Policy(o) => policy::policy(&o),
        Invocation::Apply(o) => apply::apply(&o),
        Invocation::Rotate(o) => rotate::rotate(&o),
        Invocation::Recover(o) => recover::recover(&o),
        Invocation::Rollback(o) => rollback::rollback(&o),
        Invocation::Runs(o) => runs::runs(&o),
        Invocation::Prune(o) => prune::prune(&o),
        Invocation::HooksRetry(o) => hooks::retry(&o),
        Invocation::HooksList(o) => hooks::list(&o),
        Invocation::HooksDiscard(o) => hooks::discard(&o),
        Invocation::Demo(o) => demo::demo(&o),
        Invocation::CaStage(o) => ca::stage(&o),
        Invocation::CaStatus(o) => ca_status::status(&o),
    }
}
