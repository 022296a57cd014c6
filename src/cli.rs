//! Command-line arguments: clap's raw structs and their conversion into validated values.
//! After this module no argument is a string to be parsed again.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version,
    about = "Rotate a fleet's service tokens and certificates before they expire"
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
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        /// Count credentials expiring within N days as work due (exit 3).
        #[arg(long, value_name = "N", default_value_t = 30)]
        warn_days: u32,
    },
    /// Write the dry-run plan: what each credential needs and why.
    Plan {
        #[command(flatten)]
        common: Common,
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
        /// New validity runs from this instant instead of now (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME", value_parser = parse_as_of)]
        as_of: Option<DateTime<Utc>>,
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
    },
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
        /// Pretend "now" is this instant (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME", value_parser = parse_as_of)]
        as_of: Option<DateTime<Utc>>,
    },
}

/// Arguments every read command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The fleet root (holds ca/ and nodes/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Judge the fleet as of this instant instead of now (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_name = "TIME", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
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
pub enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Toml,
    Json,
}

/// Parses `--as-of`: RFC 3339, or a date meaning midnight UTC.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| {
            format!("{text:?} is neither RFC 3339 (2026-11-28T00:00:00Z) nor a date (2026-11-28)")
        })
}

/// `--warn-days` as a duration.
pub fn warn_window(days: u32) -> TimeDelta {
    TimeDelta::days(i64::from(days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_accepts_rfc3339_and_dates() {
        let cases = [
            ("date", "2026-11-28", Some("2026-11-28T00:00:00+00:00")),
            (
                "utc",
                "2026-11-28T12:30:00Z",
                Some("2026-11-28T12:30:00+00:00"),
            ),
            (
                "offset",
                "2026-11-28T12:30:00+02:00",
                Some("2026-11-28T10:30:00+00:00"),
            ),
            ("garbage", "yesterday", None),
            ("bad date", "2026-02-30", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                parse_as_of(input).ok().map(|t| t.to_rfc3339()),
                want.map(str::to_string),
                "{name}"
            );
        }
    }
}
