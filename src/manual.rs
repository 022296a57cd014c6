//! What the binary says about itself, generated from its own clap definitions so that it can
//! never disagree with them: shell completions (`rekey completions SHELL`, clap_complete) and
//! the manual page (`rekey man`, roff by clap_mangen), which ends, as `--help` does, with the
//! exit-code table (`cli::EXIT_CODES`, docs/design.md §5). It takes what it needs from `cli`;
//! `cli` knows nothing of it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

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
