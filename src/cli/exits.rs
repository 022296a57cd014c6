//! The exit codes each subcommand can return, as its `--help` and its manual page end
//! (docs/design.md §5, "Exit codes"): the codes of [`rekey::exit::Exit`], said for that command.

/// What each code means, by command; a command lists only the codes it can return.
fn codes(command: &str) -> &'static [(u8, &'static str)] {
    const FATAL: (u8, &str) = (
        1,
        "fatal, nothing written: bad root, unusable CA, bad policy, lock held, and the like",
    );
    const USAGE: (u8, &str) = (2, "usage error: bad arguments");
    const WRITE_USAGE: (u8, &str) = (
        2,
        "usage error: bad arguments, a --node/--service that matches nothing, a run date ahead \
         of the clock",
    );
    const DONE: (u8, &str) = (
        0,
        "everything attempted was done, or there was nothing to do",
    );
    const RUN_FAILED: (u8, &str) = (
        3,
        "something of this run went wrong: an identity skipped or failed, a hook failed or \
         timed out, or the run stopped",
    );
    const LEFT: (u8, &str) = (
        4,
        "the run went well, but identities need `rekey recover` or have problems",
    );
    match command {
        "status" => &[
            (0, "nothing due, nothing wrong"),
            FATAL,
            (
                2,
                "usage error: bad arguments, a --node/--service filter that matches nothing",
            ),
            (
                3,
                "work is due (rotations, or credentials expiring within --warn-days); with \
                 --expires-within: a credential or the CA expires within it, whatever else is \
                 wrong",
            ),
            (
                4,
                "an identity needs `rekey recover`, or a problem was found (with \
                 --expires-within: only when nothing expires within it)",
            ),
        ],
        "plan" => &[
            (0, "nothing due, nothing wrong"),
            FATAL,
            (
                2,
                "usage error: bad arguments, a --node/--service filter that matches nothing",
            ),
            (3, "work is due: credentials to rotate"),
            (
                4,
                "an identity needs `rekey recover`, or a problem was found",
            ),
        ],
        "apply" | "rotate" => &[DONE, FATAL, WRITE_USAGE, RUN_FAILED, LEFT],
        "recover" | "rollback" => &[DONE, FATAL, WRITE_USAGE, RUN_FAILED],
        "begin" | "switch" | "finish" | "abort" => &[
            (
                0,
                "the stage was done, and every trust file follows the bundle",
            ),
            (
                1,
                "fatal, nothing written: refused (the wrong stage, a credential still on the \
                 previous CA, a hook of begin pending, an imported CA that falls short), lock \
                 held, and the like",
            ),
            WRITE_USAGE,
            RUN_FAILED,
        ],
        "retry" => &[
            (
                0,
                "every pending hook ran and succeeded, or none was pending",
            ),
            FATAL,
            USAGE,
            (
                3,
                "a pending hook failed again, or a command-line hook was not given again",
            ),
        ],
        "hooks" => &[
            (0, "done: listed, retried with success, or discarded"),
            FATAL,
            USAGE,
            (
                3,
                "hooks retry: a pending hook failed again, or a command-line hook was not given again",
            ),
        ],
        "demo" => &[
            (0, "the demo fleet was built and shown"),
            FATAL,
            WRITE_USAGE,
        ],
        "prune" | "discard" => &[(0, "done, or nothing to do"), FATAL, USAGE],
        "help" | "completions" | "man" => &[(0, "printed"), (2, "usage error: bad arguments")],
        _ => &[(0, "printed"), FATAL, USAGE],
    }
}

/// The closing text of `command`'s help: its exit codes.
fn text(command: &str) -> String {
    let mut out = String::from("Exit codes:");
    for (code, meaning) in codes(command) {
        out.push_str(&format!("\n  {code}  {meaning}"));
    }
    out
}

/// `command` with every subcommand (and theirs) ending its help with its own exit codes.
pub(super) fn add(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| {
            let sub = add(sub);
            let after = text(sub.get_name());
            sub.after_help(after)
        })
    })
}
