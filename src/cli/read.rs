//! The read commands, `status`, `plan`, `policy` and `runs`: each one's clap struct beside its
//! conversion into the command's options. They judge the fleet at `--as-of` as given (or now)
//! and write nothing in it; `status` and `plan` write at most their own output file.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::TimeDelta;
use clap::ValueEnum;
use rekey::{cmd, plan};

use super::args::{Common, StatusFormat, named_file};
use super::run::Clock;
use super::values::{parse_duration, use_colour};

/// The arguments of `rekey status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
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
    /// For monitors: exit 3 if a credential or the CA expires within DURATION (30d, 12h, 90m)
    /// or already has, whatever else is wrong; else 4 if an identity needs a person, else 0.
    /// Rotations merely due do not count.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "warn_days")]
    expires_within: Option<TimeDelta>,
}

impl StatusArgs {
    /// The table is coloured only on a terminal without `NO_COLOR` (read here, once).
    pub fn options(self, clock: Clock) -> cmd::status::Options {
        cmd::status::Options {
            root: self.common.root,
            as_of: clock.judged_at(self.common.as_of),
            format: match self.format {
                StatusOutput::Table => cmd::status::Format::Table {
                    colour: use_colour(
                        std::io::stdout().is_terminal(),
                        std::env::var_os("NO_COLOR").as_deref(),
                    ),
                },
                StatusOutput::Json => cmd::status::Format::Json,
                StatusOutput::Prometheus => cmd::status::Format::Prometheus {
                    x509: !self.no_x509_metrics,
                },
                StatusOutput::Html => cmd::status::Format::Html,
            },
            output: named_file(self.output),
            rule: match self.expires_within {
                Some(within) => cmd::ExitRule::ExpiresWithin(within),
                None => cmd::ExitRule::WarnWithin(TimeDelta::days(i64::from(self.warn_days))),
            },
            filter: self.filter.filter(),
        }
    }
}

/// The arguments of `rekey plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
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
}

impl PlanArgs {
    pub fn options(self, clock: Clock) -> cmd::plan::Options {
        cmd::plan::Options {
            root: self.common.root,
            as_of: clock.judged_at(self.common.as_of),
            format: match self.format {
                PlanFormat::Toml => cmd::plan::Output::Plan(plan::Format::Toml),
                PlanFormat::Json => cmd::plan::Output::Plan(plan::Format::Json),
                PlanFormat::Html => cmd::plan::Output::Html,
            },
            output: named_file(self.output),
            filter: self.filter.filter(),
        }
    }
}

/// The arguments of `rekey policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// table: the policy as a rekey.toml, each field's source in a comment; json: each field
    /// with its value and source.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    format: StatusFormat,
}

impl PolicyArgs {
    pub fn options(self) -> cmd::policy::Options {
        cmd::policy::Options {
            root: self.root,
            json: self.format == StatusFormat::Json,
        }
    }
}

/// The arguments of `rekey runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    format: StatusFormat,
}

impl RunsArgs {
    pub fn options(self) -> cmd::runs::Options {
        cmd::runs::Options {
            root: self.root,
            json: self.format == StatusFormat::Json,
        }
    }
}

/// The filters of `status` and `plan`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only identities on this node (repeatable).
    #[arg(long, value_name = "NAME")]
    node: Vec<String>,
    /// Only identities of this service (repeatable).
    #[arg(long, value_name = "NAME")]
    service: Vec<String>,
    /// Only credentials in this state (repeatable); `plan` keeps identities with one.
    #[arg(long, value_enum, value_name = "STATE")]
    state: Vec<StateArg>,
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
            StateArg::Unreadable => cmd::State::Unreadable,
        };
        cmd::Filter {
            nodes: self.node,
            services: self.service,
            states: self.state.into_iter().map(state).collect(),
        }
    }
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
    // Not readable by the user who asks (not a problem).
    Unreadable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusOutput {
    Table,
    Json,
    Prometheus,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Toml,
    Json,
    /// The plan report for a reviewer (one self-contained page); `apply` does not read it.
    Html,
}
