//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use rekey::exit::{Exit, UsageError};

fn main() -> ExitCode {
    let parsed = cli::Cli::parse();
    let invocation = match cli::invocation(parsed, chrono::Utc::now()) {
        Ok(cli::Run::Invocation(invocation)) => invocation,
        Ok(cli::Run::Help(command)) => return cli::help(command.as_deref()),
        Err(usage) => {
            eprintln!("rekey: error: {usage}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let exit = match rekey::cmd::run(invocation) {
        Ok(exit) => exit,
        Err(err) if is_broken_pipe(&err) => Exit::Ok,
        Err(err) => {
            eprintln!("rekey: error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                Exit::Usage
            } else {
                Exit::Fatal
            }
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
