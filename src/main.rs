//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

use std::process::ExitCode;

use clap::Parser;
use rekey::cli::{self, Cli, Command};
use rekey::commands;
use rekey::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = chrono::Utc::now();
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
        Command::Demo { dir, as_of } => commands::demo(&dir, as_of.unwrap_or(now)),
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
