//! The `rekey` command: parse arguments, read the clock once, run one subcommand, print the error
//! chain, exit with the documented code.

mod cli;
mod manual;

use std::process::ExitCode;

use clap::Parser;
use rekey::exit::{Exit, UsageError};
use rekey::values::Escaped;

fn main() -> ExitCode {
    limit_malloc_arenas();
    no_writable_by_others();
    let parsed = cli::Cli::parse();
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
        Err(err) if is_broken_pipe(&err) => Exit::Ok,
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

/// glibc gives a thread that finds the allocator busy an arena of its own, up to eight per core,
/// and each arena keeps what it once held: the survey's 32 workers would make memory grow with
/// the length of a run, not with the work in flight (docs/design.md §7). One arena per core is
/// as fast here, since only that many threads run at once.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tunable of glibc's allocator; called before any thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
}

/// Nothing rekey creates may be writable by its group or by others, whatever umask it was
/// started with (`umask 000` made the demo's directories 0777): the umask is narrowed, never
/// widened. Every file rekey writes also gets an explicit mode (docs/design.md §8).
fn no_writable_by_others() {
    // SAFETY: umask cannot fail; called before any thread exists.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old | 0o022);
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
