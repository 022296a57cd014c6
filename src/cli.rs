//! Command-line arguments: clap's raw structs and their conversion, once, into the validated
//! options of each subcommand. Here: the command line as a whole ([`Cli`], its [`Command`]s) and
//! the one dispatch ([`request`]). Each subcommand's clap struct lives beside its conversion
//! (`XArgs::options`, ripgrep's `LowArgs` → `HiArgs`), by group: [`read`] (status, plan, policy,
//! runs), [`rotate`] (apply, rotate, recover, demo), [`history`] (rollback, prune, hooks); what
//! several share is in [`args`], the clock and a run's settings in [`run`]. clap's types end
//! here: the library never sees them, and after this module no argument is a string to be
//! parsed again.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser, Subcommand};
use rekey::cmd::Invocation;
use rekey::exit::{Exit, UsageError};

mod args;
mod ca;
mod exits;
mod history;
pub mod process;
mod read;
mod rotate;
mod run;
mod values;

pub use args::Shell;
use ca::CaAction;
use history::{HooksAction, PruneArgs, RollbackArgs};
use read::{PlanArgs, PolicyArgs, RunsArgs, StatusArgs};
use rotate::{ApplyArgs, DemoArgs, RecoverArgs, RotateArgs};
use run::Clock;

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version = VERSION,
    about = "Rotate a fleet's service tokens and certificates before they expire",
    disable_help_subcommand = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every credential's expiry and state (the CA first).
    Status(StatusArgs),
    /// Write the dry-run plan: what each credential needs and why.
    Plan(PlanArgs),
    /// Execute a plan made by `rekey plan` (`-` reads it from stdin).
    Apply(ApplyArgs),
    /// Plan and apply in one run: what the upgrade pipeline runs.
    Rotate(RotateArgs),
    /// Rotate identities whose token expired, chosen by a person, with a reason for the audit log.
    Recover(RecoverArgs),
    /// Put back the files a run replaced, where they still hold what that run wrote.
    Rollback(RollbackArgs),
    /// Print the policy in force as a rekey.toml that parses back to the same policy.
    Policy(PolicyArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page, rekey(1), in roff (man -l <(rekey man)).
    Man,
    /// List the runs recorded in the fleet.
    Runs(RunsArgs),
    /// Remove the backups (old private keys) of runs beyond the newest N; journals and reports stay.
    Prune(PruneArgs),
    /// Hooks left pending by earlier runs (failed, timed out, or cut short by a crash).
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Build a demo fleet dated relative to now and show what rekey makes of it.
    Demo(DemoArgs),
    /// Rotate the CA itself in stages (begin, switch, finish; abort before switch), each a
    /// writing run, so that every identity stays trusted throughout.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Print this message or the help of the given subcommand.
    Help {
        /// The subcommand to describe.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// `rekey --version`: the release, the commit it was built from (`-dirty` when the tree had
/// changes; `unknown` when built outside a git checkout) and the crypto backend (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REKEY_BUILD_COMMIT"),
    ", crypto ",
    env!("REKEY_BUILD_CRYPTO"),
    ")"
);

/// The exit codes, as `--help` and the manual page (`manual`) show them.
const EXIT_CODES: &str = "\
Exit codes:
  0  nothing due, nothing wrong; for a writing command, everything attempted was done
  1  fatal, nothing written: bad root, unusable CA, bad policy, lock held, refused plan,
     a writing command without a readable CA key
  2  usage error: bad arguments, a run date ahead of the clock, a recover selector or a
     --node/--service filter that matches nothing
  3  status/plan: work is due (status --expires-within: a credential or the CA expires
     within it); writing commands: some identities skipped or failed, or the run stopped
  4  status/plan: an identity needs `rekey recover`, or a problem was found; rotate/apply:
     the run went well but leaves such identities for a person
A dry run (--dry-run; recover without --yes) exits as its run would.";

/// The command line as `--help`, the completions and the manual page describe it: clap's
/// definitions, each subcommand's help ending with the exit codes it can return.
pub fn command() -> clap::Command {
    exits::add(Cli::command())
}

/// Parses the process's arguments (clap prints help, or the error and exits 2, itself).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// What the command line asks for: a subcommand of the library, or the binary describing
/// itself (help, completions, manual page).
pub enum Request {
    Run(Box<Invocation>),
    /// `rekey help [COMMAND]`.
    Help(Option<String>),
    Completions(Shell),
    Man,
}

/// Converts the parsed command line into a validated request: each subcommand's arguments
/// convert themselves (a combination of flags clap cannot judge alone is refused there, exit 2).
/// `started` is the wall clock read once at start.
pub fn request(cli: Cli, started: DateTime<Utc>) -> Result<Request, UsageError> {
    let clock = Clock::new(started);
    let invoke = |invocation| Ok(Request::Run(Box::new(invocation)));
    match cli.command {
        Command::Status(args) => invoke(Invocation::Status(args.options(clock))),
        Command::Plan(args) => invoke(Invocation::Plan(args.options(clock))),
        Command::Apply(args) => invoke(Invocation::Apply(args.options(clock)?)),
        Command::Rotate(args) => invoke(Invocation::Rotate(args.options(clock)?)),
        Command::Recover(args) => invoke(Invocation::Recover(args.options(clock)?)),
        Command::Rollback(args) => invoke(Invocation::Rollback(args.options(clock)?)),
        Command::Policy(args) => invoke(Invocation::Policy(args.options())),
        Command::Runs(args) => invoke(Invocation::Runs(args.options())),
        Command::Prune(args) => invoke(Invocation::Prune(args.options(clock))),
        Command::Hooks { action } => invoke(action.invocation(clock)?),
        Command::Ca { action } => invoke(action.invocation(clock)?),
        Command::Demo(args) => invoke(Invocation::Demo(args.options(clock))),
        Command::Completions { shell } => Ok(Request::Completions(shell)),
        Command::Man => Ok(Request::Man),
        Command::Help { command } => Ok(Request::Help(command)),
    }
}

/// `rekey help [COMMAND]`: prints the help of rekey or of one subcommand, as `--help` does. clap's
/// own help subcommand cannot describe itself (`rekey help --help`); this one is a subcommand
/// like the others. An unknown COMMAND is a usage error (exit 2).
pub fn help(asked: Option<&str>) -> ExitCode {
    // What `rekey [COMMAND] --help` prints, made the same way (an unknown COMMAND is clap's own
    // usage error, exit 2).
    let args = ["rekey"].into_iter().chain(asked).chain(["--help"]);
    let shown = match command().try_get_matches_from(args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.print(),
        Err(e) => e.exit(),
        // `--help` stops every parse; should one go through, it was not a command to describe.
        Ok(_) => return ExitCode::from(Exit::Usage as u8),
    };
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(Exit::Fatal as u8),
    }
}
