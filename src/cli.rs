//! Command-line arguments: clap's raw structs and their conversion, once, into the validated
//! options of each subcommand ([`invocation`]). clap's types end here: the library never sees
//! them, and after this module no argument is a string to be parsed again.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use rekey::cmd::{self, Invocation};
use rekey::plan;
use rekey::write::Settings;
use values::{AsOf, parse_as_of, parse_duration, use_colour};

mod values;

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version,
    about = "Rotate a fleet's service tokens and certificates before they expire",
    after_help = crate::manual::EXIT_CODES
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
        /// Write to FILE (atomically: a temporary file renamed over it) instead of stdout.
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
        /// Write the plan to FILE (atomically) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Execute a plan made by `rekey plan`.
    Apply {
        /// The plan file (TOML or JSON).
        plan: PathBuf,
        /// New validity runs from this instant instead of now (RFC 3339, YYYY-MM-DD, or -7d).
        #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
        as_of: Option<AsOf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Plan and apply in one run: what the upgrade pipeline runs.
    Rotate {
        #[command(flatten)]
        common: Common,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
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
}

/// Arguments every read command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The fleet root (holds ca/ and nodes/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Judge the fleet as of this instant instead of now: RFC 3339, YYYY-MM-DD, or relative to
    /// now (+30d: what the fleet will look like then; -12h).
    #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
    pub as_of: Option<AsOf>,
}

/// The filters of `status` and `plan`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only identities on this node (repeatable).
    #[arg(long, value_name = "NAME")]
    pub node: Vec<String>,
    /// Only identities of this service (repeatable).
    #[arg(long, value_name = "NAME")]
    pub service: Vec<String>,
    /// Only credentials in this state (repeatable); `plan` keeps identities with one.
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Vec<StateArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Healthy,
    Fresh,
    Due,
    Stalled,
    Expired,
    Recover,
    Problem,
}

impl FilterArgs {
    fn filter(self) -> cmd::Filter {
        let state = |s: StateArg| match s {
            StateArg::Healthy => cmd::State::Healthy,
            StateArg::Fresh => cmd::State::Fresh,
            StateArg::Due => cmd::State::Due,
            StateArg::Stalled => cmd::State::Stalled,
            StateArg::Expired => cmd::State::Expired,
            StateArg::Recover => cmd::State::Recover,
            StateArg::Problem => cmd::State::Problem,
        };
        cmd::Filter {
            nodes: self.node,
            services: self.service,
            states: self.state.into_iter().map(state).collect(),
        }
    }
}

/// Arguments every writing command takes.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Progress bar on stderr: auto shows it on a terminal, for table output.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// The summary after the run: a table for people, the report as JSON for pipelines.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusOutput {
    Table,
    Json,
    Prometheus,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Toml,
    Json,
    /// The plan report for a reviewer (one self-contained page); `apply` does not read it.
    Html,
}

/// What the command line asks for: a subcommand of the library, or the binary describing
/// itself (completions, manual page).
pub enum Request {
    Run(Invocation),
    Completions(Shell),
    Man,
}

/// Converts the parsed command line into a validated request. `started` is the wall clock read
/// once at start; "now" (the default run date) is the same instant to the second.
pub fn request(cli: Cli, started: DateTime<Utc>) -> Request {
    match cli.command {
        Command::Completions { shell } => Request::Completions(shell),
        Command::Man => Request::Man,
        _ => Request::Run(invocation(cli, started)),
    }
}

/// Converts the parsed command line into a validated invocation of a library subcommand.
fn invocation(cli: Cli, started: DateTime<Utc>) -> Invocation {
    let now = chrono::SubsecRound::trunc_subsecs(started, 0);
    let settings = |w: &WriteArgs| Settings {
        jobs: w.jobs.map(usize::from),
        progress: show_progress(
            w.progress,
            std::io::stderr().is_terminal(),
            w.format == StatusFormat::Table,
        ),
        json: w.format == StatusFormat::Json,
        started,
    };
    let plan_format = |json: bool| {
        if json {
            plan::Format::Json
        } else {
            plan::Format::Toml
        }
    };
    let as_of = cli.command.as_of().map_or(now, |a| a.resolve(now));
    match cli.command {
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
            as_of,
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
            output,
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
            as_of,
            format: match format {
                PlanFormat::Toml => cmd::plan::Output::Plan(plan::Format::Toml),
                PlanFormat::Json => cmd::plan::Output::Plan(plan::Format::Json),
                PlanFormat::Html => cmd::plan::Output::Html,
            },
            output,
            filter: filter.filter(),
        }),
        Command::Apply { plan, write, .. } => Invocation::Apply(cmd::apply::Options {
            plan,
            as_of,
            write: settings(&write),
        }),
        Command::Rotate {
            common,
            dry_run,
            write,
        } => Invocation::Rotate(cmd::rotate::Options {
            root: common.root,
            as_of,
            dry_run: dry_run.then(|| plan_format(write.format == StatusFormat::Json)),
            write: settings(&write),
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
            as_of,
            selection: cmd::recover::Selection {
                nodes: node,
                services: service,
                all,
            },
            reason,
            operator: cmd::recover::operator_name(operator),
            yes,
            write: settings(&write),
        }),
        Command::Rollback {
            run_id,
            root,
            dry_run,
        } => Invocation::Rollback(cmd::rollback::Options {
            root,
            run_id,
            dry_run,
            write: Settings {
                jobs: None,
                progress: false,
                json: false,
                started,
            },
        }),
        Command::Runs { root } => Invocation::Runs(cmd::runs::Options { root }),
        Command::Policy { root } => Invocation::Policy(cmd::policy::Options { root }),
        Command::Completions { .. } | Command::Man => {
            unreachable!("request() answers completions and man before any invocation")
        }
        Command::Demo { dir, .. } => Invocation::Demo(cmd::demo::Options {
            dir,
            as_of,
            started,
        }),
    }
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
            | Command::Policy { .. }
            | Command::Completions { .. }
            | Command::Man => None,
        }
    }
}

/// Whether to draw a progress bar on stderr: always or never when asked, otherwise only for a
/// person (stderr is a terminal and the output is the table, not JSON).
fn show_progress(mode: Progress, stderr_is_terminal: bool, table_output: bool) -> bool {
    match mode {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => stderr_is_terminal && table_output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_shows_only_for_people() {
        let cases = [
            ("auto, terminal, table", Progress::Auto, true, true, true),
            ("auto, terminal, json", Progress::Auto, true, false, false),
            ("auto, piped, table", Progress::Auto, false, true, false),
            ("always, piped, json", Progress::Always, false, false, true),
            ("never, terminal, table", Progress::Never, true, true, false),
        ];
        for (name, mode, tty, table, want) in cases {
            assert_eq!(show_progress(mode, tty, table), want, "{name}");
        }
    }
}
