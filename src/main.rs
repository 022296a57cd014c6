//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

mod cli;
mod manual;

use std::process::ExitCode;

use clap::Parser;
use rekey::exit::{Exit, UsageError};

fn main() -> ExitCode {
    let parsed = cli::Cli::parse();
    let outcome = match cli::request(parsed, chrono::Utc::now()) {
        cli::Request::Run(invocation) => rekey::cmd::run(invocation),
        cli::Request::Completions(shell) => describe(|w| {
            manual::completions(shell, w);
            Ok(())
        }),
        cli::Request::Man => describe(manual::man),
    };
    let exit = match outcome {
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

/// Writes what the binary says about itself to stdout.
fn describe(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<Exit> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    write(&mut out).and_then(|()| out.flush())?;
    Ok(Exit::Ok)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
