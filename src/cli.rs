//! Command-line arguments: clap's raw structs and their conversion, once, into the validated
//! options of each subcommand ([`invocation`]). clap's types end here: the library never sees
//! them, and after this module no argument is a string to be parsed again.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use rekey::cmd::{self, Invocation};
use rekey::exit::{Exit, UsageError};
use rekey::plan;
use rekey::select::Selection;
use rekey::write::Progress;
use rekey::write::hooks::HookArgs;
use values::{AsOf, parse_as_of, parse_duration, use_colour};

mod args;
pub mod process;
mod run;
mod values;

pub use args::*;

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
    Status {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// table for people, json for machines, prometheus for node_exporter's textfile
        /// collector, html for the expiry report (one self-contained page).
        #[arg(long, value_enum, default_value_t = StatusOutput::Table)]
        format: StatusOutput,
        /// Write to FILE (atomically: a temporary file renamed over it) instead of stdout; `-` is
        /// stdout. FILE must be a regular file or not exist yet.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Leave out the x509_cert_* families (where x509-certificate-exporter already watches
        /// the same files).
        #[arg(long)]
        no_x509_metrics: bool,
        /// Count credentials expiring within N days as work due (exit 3).
        #[arg(long, value_name = "N", default_value_t = 30)]
        warn_days: u32,
        /// For monitors: exit 3 only if a credential or the CA expires within DURATION (30d,
        /// 12h, 90m) or already has; rotations merely due do not count.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "warn_days")]
        expires_within: Option<TimeDelta>,
    },
    /// Write the dry-run plan: what each credential needs and why.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = PlanFormat::Toml)]
        format: PlanFormat,
        /// Write the plan to FILE (atomically) instead of stdout; `-` is stdout. FILE must be a
        /// regular file or not exist yet.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Execute a plan made by `rekey plan` (`-` reads it from stdin).
    Apply {
        /// The plan file (TOML or JSON), or `-` for stdin.
        plan: PathBuf,
        /// The fleet, when it is mounted elsewhere than the plan's root (same CA required).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// New validity runs from this instant instead of now (RFC 3339, YYYY-MM-DD, or -7d).
        #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
        as_of: Option<AsOf>,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Plan and apply in one run: what the upgrade pipeline runs.
    Rotate {
        #[command(flatten)]
        common: Common,
        /// Print the plan (TOML, or JSON with --format json) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: write the plan to FILE (atomically; `-` is stdout). FILE must be a
        /// regular file or not exist yet.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FILE",
            requires = "dry_run"
        )]
        output: Option<PathBuf>,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Rotate identities whose token expired, chosen by a person, with a reason for the audit log.
    #[command(group = clap::ArgGroup::new("selection").required(true).multiple(true).args(["node", "service", "all"]))]
    Recover {
        #[command(flatten)]
        common: Common,
        /// Recover identities on this node (repeatable).
        #[arg(long, value_name = "NAME")]
        node: Vec<String>,
        /// Recover identities of this service (repeatable).
        #[arg(long, value_name = "NAME")]
        service: Vec<String>,
        /// Recover every identity in state recover.
        #[arg(long, conflicts_with_all = ["node", "service"])]
        all: bool,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who (recorded in the audit log; default: the user name).
        #[arg(long, value_name = "NAME")]
        operator: Option<String>,
        /// Do it; without this, only show what would be done.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Put back the files a run replaced, where they still hold what that run wrote.
    Rollback {
        /// The run id (see `rekey runs`).
        run_id: String,
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        /// Show what would be put back and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The summary after the run: a table for people, the report as JSON for pipelines.
        #[arg(long, value_enum, default_value_t = RunFormat::Table)]
        format: RunFormat,
        #[command(flatten)]
        hooks: HookFlags,
    },
    /// Print the policy in force as a rekey.toml that parses back to the same policy.
    Policy {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
    /// Print a shell completion script (bash, zsh or fish).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page, rekey(1), in roff (man -l <(rekey man)).
    Man,
    /// List the runs recorded in the fleet.
    Runs {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
    },
    /// Remove the backups (old private keys) of runs beyond the newest N; journals and reports stay.
    Prune {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        /// Keep the backups of the newest N runs (default: the policy's keep_runs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        /// Show what would be removed and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hooks left pending by earlier runs (failed, timed out, or cut short by a crash).
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Build a demo fleet dated relative to now and show what rekey makes of it.
    Demo {
        /// Where to build the demo fleet.
        #[arg(long, value_name = "DIR", default_value = "rekey-demo")]
        dir: PathBuf,
        /// Pretend "now" is this instant (RFC 3339, YYYY-MM-DD, or -7d).
        #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
        as_of: Option<AsOf>,
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
  4  status/plan/rotate: an identity needs `rekey recover`, or a problem was found";

/// What the command line asks for: a subcommand of the library, or the binary describing
/// itself (help, completions, manual page).
pub enum Request {
    Run(Box<Invocation>),
    /// `rekey help [COMMAND]`.
    Help(Option<String>),
    Completions(Shell),
    Man,
}

/// Converts the parsed command line into a validated request. `started` is the wall clock read
/// once at start; "now" (the default run date) is the same instant to the second.
pub fn request(cli: Cli, started: DateTime<Utc>) -> Result<Request, UsageError> {
    match cli.command {
        Command::Completions { shell } => Ok(Request::Completions(shell)),
        Command::Man => Ok(Request::Man),
        _ => invocation(cli, started),
    }
}

/// `rekey help [COMMAND]`: prints the help of rekey or of one subcommand, as `--help` does. clap's
/// own help subcommand cannot describe itself (`rekey help --help`); this one is a subcommand
/// like the others. An unknown COMMAND is a usage error (exit 2).
pub fn help(command: Option<&str>) -> ExitCode {
    let mut cli = Cli::command();
    cli.build();
    let printed = match command {
        None => cli.print_help(),
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => sub.print_help(),
            None => cli
                .error(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!("unrecognized subcommand '{name}'"),
                )
                .exit(),
        },
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(Exit::Fatal as u8),
    }
}

/// Converts the parsed command line into a validated invocation of a library subcommand. A
/// combination of flags clap cannot judge alone is refused here (exit 2).
fn invocation(cli: Cli, started: DateTime<Utc>) -> Result<Request, UsageError> {
    let clock = run::Clock::new(started);
    let dry_run = matches!(cli.command, Command::Rotate { dry_run: true, .. });
    if let Command::Apply { write, .. }
    | Command::Rotate { write, .. }
    | Command::Recover { write, .. } = &cli.command
        && write.format == RunFormat::Toml
        && !dry_run
    {
        return Err(UsageError(
            "--format toml goes with rotate --dry-run (a run's report is a table or JSON)".into(),
        ));
    }
    let plan_format = |json: bool| {
        if json {
            plan::Format::Json
        } else {
            plan::Format::Toml
        }
    };
    let judged_at = clock.judged_at(cli.command.as_of());
    let run_date = clock.run_date(cli.command.as_of());
    // `-` for a file means standard input or output.
    let file = |p: Option<PathBuf>| p.filter(|p| p.as_os_str() != "-");
    Ok(Request::Run(Box::new(match cli.command {
        Command::Status {
            common,
            filter,
            format,
            output,
            no_x509_metrics,
            warn_days,
            expires_within,
        } => Invocation::Status(cmd::status::Options {
            root: common.root,
            as_of: judged_at,
            format: match format {
                StatusOutput::Table => cmd::status::Format::Table {
                    colour: use_colour(
                        std::io::stdout().is_terminal(),
                        std::env::var_os("NO_COLOR").as_deref(),
                    ),
                },
                StatusOutput::Json => cmd::status::Format::Json,
                StatusOutput::Prometheus => cmd::status::Format::Prometheus {
                    x509: !no_x509_metrics,
                },
                StatusOutput::Html => cmd::status::Format::Html,
            },
            output: file(output),
            rule: match expires_within {
                Some(within) => cmd::ExitRule::ExpiresWithin(within),
                None => cmd::ExitRule::WarnWithin(TimeDelta::days(i64::from(warn_days))),
            },
            filter: filter.filter(),
        }),
        Command::Plan {
            common,
            filter,
            format,
            output,
        } => Invocation::Plan(cmd::plan::Options {
            root: common.root,
            as_of: judged_at,
            format: match format {
                PlanFormat::Toml => cmd::plan::Output::Plan(plan::Format::Toml),
                PlanFormat::Json => cmd::plan::Output::Plan(plan::Format::Json),
                PlanFormat::Html => cmd::plan::Output::Html,
            },
            output: file(output),
            filter: filter.filter(),
        }),
        Command::Apply {
            plan,
            root,
            select,
            write,
            ..
        } => Invocation::Apply(cmd::apply::Options {
            plan: file(Some(plan)),
            root,
            as_of: run_date,
            selection: select.selection(),
            force: select.force,
            write: write.settings(clock),
        }),
        Command::Rotate {
            common,
            dry_run,
            output,
            select,
            write,
        } => Invocation::Rotate(cmd::rotate::Options {
            root: common.root,
            as_of: run_date,
            dry_run: dry_run.then(|| cmd::rotate::DryRun {
                format: plan_format(write.format == RunFormat::Json),
                output: file(output),
            }),
            selection: select.selection(),
            force: select.force,
            write: write.settings(clock),
        }),
        Command::Recover {
            common,
            node,
            service,
            all,
            reason,
            operator,
            yes,
            write,
        } => Invocation::Recover(cmd::recover::Options {
            root: common.root,
            as_of: run_date,
            selection: Selection {
                nodes: node,
                services: service,
                all,
            },
            reason,
            operator: cmd::recover::operator_name(operator),
            yes,
            write: write.settings(clock),
        }),
        Command::Rollback {
            run_id,
            root,
            dry_run,
            format,
            hooks,
        } => Invocation::Rollback(cmd::rollback::Options {
            root,
            run_id,
            dry_run,
            as_of: run_date,
            write: run::settings(clock, None, Progress::Hidden, format, hooks.args()),
        }),
        Command::Runs { root, format } => Invocation::Runs(cmd::runs::Options {
            root,
            json: format == StatusFormat::Json,
        }),
        Command::Prune {
            root,
            keep,
            dry_run,
        } => Invocation::Prune(cmd::prune::Options {
            root,
            keep: keep.map(|k| k as usize),
            dry_run,
            as_of: run_date,
            write: run::quiet(clock, HookArgs::default()),
        }),
        Command::Hooks { action } => match action {
            HooksAction::Retry {
                root,
                deploy_hook,
                post_hook,
            } => Invocation::HooksRetry(cmd::hooks::Options {
                root,

                as_of: run_date,
                write: run::quiet(
                    clock,
                    HookArgs {
                        deploy: deploy_hook,
                        post: post_hook,
                        skip: false,
                    },
                ),
            }),
            HooksAction::List { root, format } => Invocation::HooksList(cmd::hooks::ListOptions {
                root,
                json: format == StatusFormat::Json,
            }),
            HooksAction::Discard { target, root } => {
                Invocation::HooksDiscard(cmd::hooks::DiscardOptions {
                    root,
                    target: target.parse().map_err(UsageError)?,
                    started: clock.started(),
                })
            }
        },
        Command::Policy { root } => Invocation::Policy(cmd::policy::Options { root }),
        Command::Completions { .. } | Command::Man => {
            unreachable!("request() answers completions and man before any invocation")
        }
        Command::Demo { dir, .. } => Invocation::Demo(cmd::demo::Options {
            dir,
            as_of: run_date,
            write: run::quiet(clock, HookArgs::default()),
        }),
        Command::Help { command } => return Ok(Request::Help(command)),
    })))
}

impl Command {
    /// The `--as-of` given, whichever subcommand took it.
    fn as_of(&self) -> Option<AsOf> {
        match self {
            Command::Status { common, .. }
            | Command::Plan { common, .. }
            | Command::Rotate { common, .. }
            | Command::Recover { common, .. } => common.as_of,
            Command::Apply { as_of, .. } | Command::Demo { as_of, .. } => *as_of,
            Command::Rollback { .. }
            | Command::Runs { .. }
            | Command::Prune { .. }
            | Command::Hooks { .. }
            | Command::Help { .. }
            | Command::Policy { .. }
            | Command::Completions { .. }
            | Command::Man => None,
        }
    }
}
