//! The argument groups and value lists several subcommands share (clap's types), with what each
//! becomes: the root and `--as-of` of a command that judges the fleet, a writing command's flags
//! (its [`Settings`]) and hooks, the formats of a run's summary and of a listing, the shells.

use std::io::IsTerminal;
use std::path::PathBuf;

use rekey::exit::UsageError;
use rekey::write::Settings;
use rekey::write::hooks::HookArgs;

use super::run::{self, Clock};
use super::values::{AsOf, parse_as_of};
pub use super::values::{ProgressFlag, RunFormat, Shell, StatusFormat};

/// Arguments every command that judges the fleet takes.
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

/// Hooks on the command line, for the commands that change credentials.
#[derive(Debug, clap::Args)]
pub struct HookFlags {
    /// Run CMD (through sh -c, in the identity's directory) once per identity changed, after
    /// its batch is in place (repeatable).
    #[arg(long, value_name = "CMD")]
    pub deploy_hook: Vec<String>,
    /// Run CMD once at the end of a run that changed something (repeatable).
    #[arg(long, value_name = "CMD")]
    pub post_hook: Vec<String>,
    /// Run no hook (the policy's reload and hooks/ included); the report says so.
    #[arg(long, conflicts_with_all = ["deploy_hook", "post_hook"])]
    pub no_hooks: bool,
}

impl HookFlags {
    pub fn args(&self) -> HookArgs {
        HookArgs {
            deploy: self.deploy_hook.clone(),
            post: self.post_hook.clone(),
            skip: self.no_hooks,
        }
    }
}

/// Arguments every writing command takes.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Progress on stderr: auto draws a bar on a terminal, for table output; always also
    /// prints a plain line every few seconds where stderr is not a terminal.
    #[arg(long, value_enum, default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// The summary after the run: a table for people, the report as JSON for pipelines (for
    /// `apply PLAN --dry-run`, html: that report as the plan file's review page).
    #[arg(long, value_enum, default_value_t = RunFormat::Table)]
    pub format: RunFormat,
    /// Decide everything the run would and write nothing: print the report the run would write
    /// (with --format json, the same report with "dry_run": true; with apply's --format html,
    /// the review page of the plan file). No lock, no hook.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hooks: HookFlags,
}

impl WriteArgs {
    /// The settings of the run these flags describe.
    pub fn settings(&self, clock: Clock) -> Settings {
        let progress = run::show_progress(
            self.progress,
            std::io::stderr().is_terminal(),
            self.format == RunFormat::Table,
        );
        let mut settings =
            run::settings(clock, self.jobs, progress, self.format, self.hooks.args());
        settings.sink = run::sink(self.dry_run);
        settings
    }

    /// Refuses the formats a run's report is not shown in: `toml`, a plan's, and `html`, the
    /// review page only `apply PLAN --dry-run` makes (`review`: this is that dry run).
    pub fn check_format(&self, review: bool) -> Result<(), UsageError> {
        check_run_format(self.format, review)
    }
}

/// Refuses `--format toml` (a plan's) and `--format html` unless `review` (a dry run of
/// `apply PLAN`, whose review page it is): a run's report is a table or JSON.
pub fn check_run_format(format: RunFormat, review: bool) -> Result<(), UsageError> {
    match format {
        RunFormat::Toml => Err(UsageError(
            "--format toml is a plan's: rekey plan writes it (a run's report, and its dry \
             run's, is a table or JSON)"
                .into(),
        )),
        RunFormat::Html if !review => Err(UsageError(
            "--format html is the review page of a plan file, made by its dry run: rekey apply \
             PLAN --dry-run --format html -o FILE (a run's report is a table or JSON)"
                .into(),
        )),
        RunFormat::Table | RunFormat::Json | RunFormat::Html => Ok(()),
    }
}

/// The file a FILE argument names; `None` for `-`, standard input or output.
pub fn named_file(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| p.as_os_str() != "-")
}
