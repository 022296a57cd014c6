//! The commands that act on runs already made, `rollback`, `prune` and `hooks`: each one's clap
//! struct beside its conversion into the command's options. Their run date is the clock, to the
//! second: no `--as-of`.

use std::path::PathBuf;

use clap::Subcommand;
use rekey::cmd::{self, Invocation};
use rekey::exit::UsageError;
use rekey::write::Progress;
use rekey::write::hooks::HookArgs;

use super::args::{HookFlags, RunFormat, StatusFormat};
use super::run::{self, Clock};

/// The arguments of `rekey rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run id (see `rekey runs`).
    run_id: String,
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Decide everything the rollback would and write nothing: print the report it would
    /// write (with --format json, "dry_run": true).
    #[arg(long)]
    dry_run: bool,
    /// The summary after the run: a table for people, the report as JSON for pipelines.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    format: StatusFormat,
    #[command(flatten)]
    hooks: HookFlags,
}

impl RollbackArgs {
    /// A rollback shows no progress and runs on one worker per core.
    pub fn options(self, clock: Clock) -> Result<cmd::rollback::Options, UsageError> {
        let format = match self.format {
            StatusFormat::Table => RunFormat::Table,
            StatusFormat::Json => RunFormat::Json,
        };
        let hooks = self.hooks.args();
        let mut write = run::settings(clock, None, Progress::Hidden, format, hooks);
        write.sink = run::sink(self.dry_run);
        Ok(cmd::rollback::Options {
            root: self.root,
            run_id: self.run_id,
            as_of: clock.run_date(None),
            write,
        })
    }
}

/// The arguments of `rekey prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Keep the backups of the newest N runs (default: the policy's keep_runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep: Option<u32>,
    /// Show what would be removed and write nothing.
    #[arg(long)]
    dry_run: bool,
}

impl PruneArgs {
    pub fn options(self, clock: Clock) -> cmd::prune::Options {
        let mut write = run::quiet(clock, HookArgs::default());
        write.sink = run::sink(self.dry_run);
        cmd::prune::Options {
            root: self.root,
            keep: self.keep.map(|k| k as usize),
            as_of: clock.run_date(None),
            write,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Run every pending hook now, each as the configuration says now: the policy's current
    /// reload, the current hooks/ executable; one whose source or identity is gone is dropped
    /// (audited). A pending --deploy-hook/--post-hook runs only when given again here.
    Retry {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        /// Run the pending --deploy-hook whose command is CMD, byte for byte (repeatable).
        #[arg(long, value_name = "CMD")]
        deploy_hook: Vec<String>,
        /// Run the pending --post-hook whose command is CMD, byte for byte (repeatable).
        #[arg(long, value_name = "CMD")]
        post_hook: Vec<String>,
    },
    /// List the pending hooks (run id, call, kind, source, identity, why); runs nothing, takes
    /// no lock.
    List {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
    },
    /// Drop one pending hook call (RUN_ID:CALL) or every pending call of a run (RUN_ID), under
    /// the writer lock, journaled and audited; runs nothing.
    Discard {
        /// RUN_ID or RUN_ID:CALL, as `rekey hooks list` shows them.
        #[arg(value_name = "RUN_ID[:CALL]")]
        target: String,
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
}

impl HooksAction {
    /// A target `hooks discard` cannot name is refused here (exit 2).
    pub fn invocation(self, clock: Clock) -> Result<Invocation, UsageError> {
        Ok(match self {
            HooksAction::Retry {
                root,
                deploy_hook,
                post_hook,
            } => {
                let given = HookArgs {
                    deploy: deploy_hook,
                    post: post_hook,
                    skip: false,
                };
                Invocation::HooksRetry(cmd::hooks::Options {
                    root,
                    as_of: clock.run_date(None),
                    write: run::quiet(clock, given),
                })
            }
            HooksAction::List { root, format } => Invocation::HooksList(cmd::hooks::ListOptions {
                root,
                json: format == StatusFormat::Json,
            }),
            HooksAction::Discard { target, root } => {
                Invocation::HooksDiscard(cmd::hooks::DiscardOptions {
                    root,
                    target: target.parse()?,
                    started: clock.started(),
                })
            }
        })
    }
}
