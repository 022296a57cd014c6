//! The commands that rotate credentials, `apply`, `rotate`, `recover` and `demo`: each one's clap
//! struct beside its conversion into the command's options. Their date is the run date
//! ([`Clock::run_date`], to the second), their dry runs (`--dry-run`, `recover` without `--yes`)
//! included: a dry run is the run, with the sink that writes nothing.

use std::path::PathBuf;

use rekey::cmd;
use rekey::exit::UsageError;
use rekey::select::Selection;
use rekey::write::hooks::HookArgs;

use super::args::{Common, RunFormat, WriteArgs, named_file};
use super::run::{self, Clock};
use super::values::{AsOf, parse_as_of};

/// The arguments of `rekey apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
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
    /// With --dry-run --format html: write the review page to FILE (atomically) instead of
    /// stdout; `-` is stdout. FILE must be a regular file or not exist yet.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

impl ApplyArgs {
    pub fn options(self, clock: Clock) -> Result<cmd::apply::Options, UsageError> {
        self.write.check_format(self.write.dry_run)?;
        let review = (self.write.format == RunFormat::Html).then(|| cmd::apply::Review {
            output: named_file(self.output.clone()),
        });
        if review.is_some() && !self.select.whole() {
            return Err(UsageError(
                "the review page shows what the whole plan file does: drop --node, --service and \
                 --force (a page of part of a plan would carry the whole file's sha256)"
                    .into(),
            ));
        }
        if review.is_none() && self.output.is_some() {
            return Err(UsageError(
                "-o writes the review page of the plan file: give --dry-run --format html too \
                 (a run's report is printed, and saved under .rekey/runs/)"
                    .into(),
            ));
        }
        Ok(cmd::apply::Options {
            plan: named_file(Some(self.plan)),
            root: self.root,
            as_of: clock.run_date(self.as_of),
            selection: self.select.selection(),
            force: self.select.force,
            write: self.write.settings(clock),
            review,
        })
    }
}

/// The arguments of `rekey rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    select: SelectArgs,
    #[command(flatten)]
    write: WriteArgs,
}

impl RotateArgs {
    pub fn options(self, clock: Clock) -> Result<cmd::rotate::Options, UsageError> {
        self.write.check_format(false)?;
        Ok(cmd::rotate::Options {
            root: self.common.root,
            as_of: clock.run_date(self.common.as_of),
            selection: self.select.selection(),
            force: self.select.force,
            write: self.write.settings(clock),
        })
    }
}

/// The arguments of `rekey recover`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("selection").required(true).multiple(true).args(["node", "service", "all"]))]
pub struct RecoverArgs {
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
    /// Who (recorded in the audit log; default: SUDO_USER, else USER, else the uid).
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    /// Do it; without this, only show what would be done (as --dry-run does).
    #[arg(long, conflicts_with = "dry_run")]
    yes: bool,
    #[command(flatten)]
    write: WriteArgs,
}

impl RecoverArgs {
    pub fn options(self, clock: Clock) -> Result<cmd::recover::Options, UsageError> {
        self.write.check_format(false)?;
        if self
            .operator
            .as_deref()
            .is_some_and(|o| o.trim().is_empty())
        {
            return Err(UsageError(
                "--operator must name who recovers (leave it out to record SUDO_USER, USER or \
                 the uid)"
                    .into(),
            ));
        }
        Ok(cmd::recover::Options {
            root: self.common.root,
            as_of: clock.run_date(self.common.as_of),
            selection: Selection {
                nodes: self.node,
                services: self.service,
                all: self.all,
            },
            reason: self.reason,
            operator: cmd::recover::operator_name(self.operator),
            // Without --yes, a dry run.
            write: {
                let mut write = self.write.settings(clock);
                write.sink = run::sink(!self.yes);
                write
            },
        })
    }
}

/// The arguments of `rekey demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to build the demo fleet.
    #[arg(long, value_name = "DIR", default_value = "rekey-demo")]
    dir: PathBuf,
    /// Pretend "now" is this instant (RFC 3339, YYYY-MM-DD, or -7d).
    #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
    as_of: Option<AsOf>,
    /// Give the demo fleet a CA that ends N days from now (1 to 36500), with ca/bundle.pem and
    /// a ca.pem in every identity, to walk a CA rotation through its stages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    ca_days: Option<u32>,
}

impl DemoArgs {
    pub fn options(self, clock: Clock) -> cmd::demo::Options {
        cmd::demo::Options {
            dir: self.dir,
            as_of: clock.run_date(self.as_of),
            ca_days: self.ca_days,
            write: run::quiet(clock, HookArgs::default()),
        }
    }
}

/// Which identities `apply` and `rotate` act on (a canary run), and whether to force.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// Only identities on this node (repeatable).
    #[arg(long, value_name = "NAME")]
    node: Vec<String>,
    /// Only identities of this service (repeatable).
    #[arg(long, value_name = "NAME")]
    service: Vec<String>,
    /// Also rotate credentials that would be kept (a suspected key compromise); never those
    /// that need recover or have a problem.
    #[arg(long)]
    force: bool,
}

impl SelectArgs {
    /// Neither narrowed (`--node`, `--service`) nor widened (`--force`).
    fn whole(&self) -> bool {
        self.node.is_empty() && self.service.is_empty() && !self.force
    }

    fn selection(&self) -> Selection {
        Selection {
            nodes: self.node.clone(),
            services: self.service.clone(),
            all: self.node.is_empty() && self.service.is_empty(),
        }
    }
}
