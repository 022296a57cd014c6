//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

use std::process::ExitCode;

use clap::Parser;
use rekey::cli::{self, Cli, Command, WriteArgs};
use rekey::exit::Exit;
use rekey::recover::{self, Request, Selection};
use rekey::rotate::{self, WriteOptions};
use rekey::{commands, demo, rollback};

fn main() -> ExitCode {
    let cli = Cli::parse();
    rekey::token::install_provider();
    let started = chrono::Utc::now();
    // Certificates and tokens carry whole seconds: "now" is the run's start, to the second.
    let now = chrono::SubsecRound::trunc_subsecs(started, 0);
    let write = |w: &WriteArgs| WriteOptions {
        jobs: w.jobs.map(usize::from),
        progress: w.progress,
        format: w.format,
        started,
    };
    let result = match cli.command {
        Command::Status {
            common,
            format,
            warn_days,
        } => commands::status(
            &common.root,
            common.as_of.unwrap_or(now),
            format,
            cli::warn_window(warn_days),
        ),
        Command::Plan {
            common,
            format,
            output,
        } => commands::plan(
            &common.root,
            common.as_of.unwrap_or(now),
            format,
            output.as_deref(),
        ),
        Command::Apply {
            plan,
            as_of,
            write: w,
        } => rotate::apply(&plan, as_of.unwrap_or(now), &write(&w)),
        Command::Rotate {
            common,
            dry_run,
            write: w,
        } => rotate::rotate(
            &common.root,
            common.as_of.unwrap_or(now),
            dry_run,
            &write(&w),
        ),
        Command::Recover {
            common,
            node,
            service,
            all,
            reason,
            operator,
            yes,
            write: w,
        } => {
            let request = Request {
                selection: Selection {
                    nodes: node,
                    services: service,
                    all,
                },
                reason,
                operator: recover::operator_name(operator),
                yes,
            };
            recover::recover(
                &common.root,
                common.as_of.unwrap_or(now),
                request,
                &write(&w),
            )
        }
        Command::Rollback { run_id, root } => {
            rollback::rollback(&root, &run_id, &rollback::quiet_options(started))
        }
        Command::Runs { root } => rollback::list(&root),
        Command::Demo { dir, as_of } => demo::demo(&dir, as_of.unwrap_or(now), started),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(err) if is_broken_pipe(&err) => Exit::Ok,
        Err(err) => {
            eprintln!("rekey: error: {err:#}");
            Exit::Fatal
        }
    };
    ExitCode::from(exit as u8)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
