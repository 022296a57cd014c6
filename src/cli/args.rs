//! The argument groups and value lists of the command line, shared by several subcommands
//! (clap's types; converted into the library's options in the parent module).

use std::path::PathBuf;

use std::io::IsTerminal;

use clap::{Subcommand, ValueEnum};
use rekey::cmd;
use rekey::select::Selection;
use rekey::write::Settings;
use rekey::write::hooks::HookArgs;

use super::run;
use super::values::{AsOf, parse_as_of};

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
    pub fn filter(self) -> cmd::Filter {
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
    /// Progress on stderr: auto draws a bar on a terminal, for table output; always also
    /// prints a plain line every few seconds where stderr is not a terminal.
    #[arg(long, value_enum, default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// The summary after the run: a table for people, the report as JSON for pipelines.
    /// (`toml`: the plan of `rotate --dry-run`).
    #[arg(long, value_enum, default_value_t = RunFormat::Table)]
    pub format: RunFormat,
    #[command(flatten)]
    pub hooks: HookFlags,
}

impl WriteArgs {
    /// The settings of the run these flags describe.
    pub fn settings(&self, clock: run::Clock) -> Settings {
        let progress = run::show_progress(
            self.progress,
            std::io::stderr().is_terminal(),
            self.format == RunFormat::Table,
        );
        run::settings(clock, self.jobs, progress, self.format, self.hooks.args())
    }
}

/// Which identities a rotating command acts on (a canary run), and whether to force.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// Only identities on this node (repeatable).
    #[arg(long, value_name = "NAME")]
    pub node: Vec<String>,
    /// Only identities of this service (repeatable).
    #[arg(long, value_name = "NAME")]
    pub service: Vec<String>,
    /// Also rotate credentials that would be kept (a suspected key compromise); never those
    /// that need recover or have a problem.
    #[arg(long)]
    pub force: bool,
}

impl SelectArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            nodes: self.node.clone(),
            services: self.service.clone(),
            all: self.node.is_empty() && self.service.is_empty(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    Table,
    Json,
    Toml,
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
pub enum ProgressFlag {
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
