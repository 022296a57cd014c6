//! What the binary says about itself, generated from its own clap definitions so that it can
//! never disagree with them: shell completions (`rekey completions SHELL`, clap_complete) and
//! the manual page (`rekey man`, roff by clap_mangen), which ends, as `--help` does, with the
//! exit-code table (`cli::EXIT_CODES`, docs/design.md §5). It takes what it needs from `cli`;
//! `cli` knows nothing of it.

use std::io::Write;

use crate::cli::{Shell, command};

/// Writes the completion script for `shell` to `w`.
pub fn completions(shell: Shell, w: &mut dyn Write) {
    let mut command = command();
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
    let mut command = command();
    command.build();
    clap_mangen::Man::new(command.clone()).render(w)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("rekey-{}", sub.get_name());
        let mut page = sub
            .clone()
            .name(name.clone())
            .bin_name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        if !sub.has_subcommands() {
            page = page.override_usage(synopsis(&name, sub));
        }
        clap_mangen::Man::new(page).render(w)?;
    }
    Ok(())
}

/// A subcommand's synopsis with each option's value names (`[--root <DIR>]`, `[--node
/// <NAME>]...`), required ones bare, positionals last: what clap_mangen's own synopsis leaves
/// out of options.
fn synopsis(name: &str, command: &clap::Command) -> String {
    let mut words = vec![name.to_string()];
    let shown = |a: &&clap::Arg| !a.is_hide_set() && a.get_id() != "help";
    // An argument of a required group is shown in it: `(--node <NAME>... | --all)`.
    let groups: Vec<Vec<&clap::Arg>> = command
        .get_groups()
        .filter(|g| g.is_required_set())
        .map(|g| {
            let ids: Vec<_> = g.get_args().collect();
            command
                .get_arguments()
                .filter(|a| ids.contains(&a.get_id()))
                .collect()
        })
        .collect();
    let grouped = |a: &clap::Arg| groups.iter().flatten().any(|g| g.get_id() == a.get_id());
    let flag = |arg: &clap::Arg| {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => arg.get_id().to_string(),
        };
        let value = arg
            .get_action()
            .takes_values()
            .then(|| value_names(arg))
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        format!("{flag}{value}")
    };
    for arg in command
        .get_arguments()
        .filter(shown)
        .filter(|a| !a.is_positional())
    {
        if !grouped(arg) {
            words.push(bracketed(arg, flag(arg)));
        }
    }
    for group in &groups {
        let members: Vec<String> = group
            .iter()
            .map(|a| format!("{}{}", flag(a), repeat(a)))
            .collect();
        words.push(format!("({})", members.join(" | ")));
    }
    for arg in command.get_positionals().filter(shown) {
        words.push(bracketed(arg, value_names(arg)));
    }
    words.join(" ")
}

/// `<NAME>` (or each of several), from the value names clap shows in `--help`.
fn value_names(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(|n| format!("<{n}>"))
            .collect::<Vec<_>>()
            .join(" "),
        None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
    }
}

/// `[WORD]` for an optional argument, `WORD` for a required one; `...` after a repeatable one.
fn bracketed(arg: &clap::Arg, word: String) -> String {
    if arg.is_required_set() {
        format!("{word}{}", repeat(arg))
    } else {
        format!("[{word}]{}", repeat(arg))
    }
}

/// `...` after an argument that may be given more than once.
fn repeat(arg: &clap::Arg) -> &'static str {
    if matches!(
        arg.get_action(),
        clap::ArgAction::Append | clap::ArgAction::Count
    ) {
        "..."
    } else {
        ""
    }
}
