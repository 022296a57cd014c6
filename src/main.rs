//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

mod cli;
mod manual;

use std::process::ExitCode;

use rekey::exit::{Exit, UsageError};
use rekey::values::Escaped;

fn main() -> ExitCode {
    cli::process::prepare();
    let parsed = cli::parse();
    let outcome = match cli::request(parsed, chrono::Utc::now()) {
        Ok(cli::Request::Run(invocation)) => rekey::cmd::run(*invocation),
        Ok(cli::Request::Help(command)) => return cli::help(command.as_deref()),
        Ok(cli::Request::Completions(shell)) => describe(|w| {
            manual::completions(shell, w);
            Ok(())
        }),
        Ok(cli::Request::Man) => describe(manual::man),
        Err(usage) => {
            eprintln!("rekey: error: {}", Escaped::new(&usage.to_string()));
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let exit = match outcome {
        Ok(exit) => exit,
        Err(err) if cli::process::is_broken_pipe(&err) => Exit::Ok,
        Err(err) => {
            // The one place every error is printed: a name or path in it is escaped here.
            eprintln!("rekey: error: {}", Escaped::new(&format!("{err:#}")));
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
