//! What the binary says about itself, generated from its own clap definitions so that it can
//! never disagree with them: shell completions (`rekey completions SHELL`, clap_complete) and
//! the manual page (`rekey man`, roff by clap_mangen), and the exit-code table that `--help`
//! and the page both end with (docs/design.md §5).

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// The exit codes, as `--help` and the manual page show them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  nothing due, nothing wrong; for a writing command, everything attempted was done
  1  fatal, nothing written: bad root, unusable CA, bad policy, lock held, refused plan,
     a writing command without a readable CA key
  2  usage error: bad arguments, a run date ahead of the clock, a recover selector or a
     --node/--service filter that matches nothing
  3  status/plan: work is due (status --expires-within: a credential or the CA expires
     within it); writing commands: some identities skipped or failed, or the run stopped
  4  status/plan/rotate: an identity needs `rekey recover`, or a problem was found";

/// Writes the completion script for `shell` to `w`.
pub fn completions(shell: Shell, w: &mut dyn Write) {
    let mut command = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "rekey", w);
}

/// Writes the manual, in roff, to `w`: rekey(1), then one page per subcommand
/// (rekey-status(1), …), which the first page lists.
pub fn man(w: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Cli::command();
    command.build();
    clap_mangen::Man::new(command.clone()).render(w)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("rekey-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(name)
            .version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(page).render(w)?;
    }
    Ok(())
}
