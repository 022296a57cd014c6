//! Completions and the manual page (docs/design.md §5), generated from the clap definitions:
//! they name every subcommand and flag the binary takes, and `--help` and the page end with the
//! exit-code table.

mod common;

use common::rekey;

fn stdout_of(args: &[&str]) -> String {
    let out = rekey().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_know_every_subcommand_and_the_new_flags() {
    for (shell, marker) in [
        ("bash", "_rekey()"),
        ("zsh", "#compdef rekey"),
        ("fish", "complete -c rekey"),
    ] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains(marker), "{shell}");
        for word in [
            "status",
            "policy",
            "completions",
            "expires-within",
            "no-x509-metrics",
            "prometheus",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bash = stdout_of(&["completions", "bash"]);
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = rekey()
        .args(["completions", "powershell"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unsupported shell is a usage error"
    );
}

#[test]
fn the_manual_and_help_carry_the_commands_and_exit_codes() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH rekey 1"), "{page}");
    for sub in [
        "status", "plan", "apply", "rotate", "recover", "rollback", "policy", "runs",
    ] {
        assert!(
            page.contains(&format!(".TH rekey-{sub} 1")),
            "no page for {sub}"
        );
    }
    assert!(
        page.contains("expires\\-within"),
        "status flags are documented"
    );
    let help = stdout_of(&["--help"]);
    for text in [&page, &help] {
        assert!(text.contains("Exit codes:"));
        for code in [
            "  0  nothing due",
            "  1  fatal",
            "  2  usage error",
            "  3  status/plan",
            "  4  status/plan: an identity needs",
        ] {
            assert!(text.contains(code), "{code}");
        }
    }
}

#[test]
fn every_subcommands_help_ends_with_the_exit_codes_it_can_return() {
    let help = |args: &[&str]| {
        let out = rekey().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let subcommands = [
        "status",
        "plan",
        "apply",
        "rotate",
        "recover",
        "rollback",
        "policy",
        "completions",
        "man",
        "runs",
        "prune",
        "hooks",
        "demo",
        "help",
    ];
    for sub in subcommands
        .iter()
        .map(|s| vec![*s])
        .chain(["list", "retry", "discard"].map(|s| vec!["hooks", s]))
    {
        let text = help(&[&sub[..], &["--help"]].concat());
        let (_, codes) = text
            .rsplit_once("Exit codes:\n")
            .unwrap_or_else(|| panic!("{sub:?} --help has no exit codes:\n{text}"));
        let listed: Vec<&str> = codes.lines().map(|l| &l.trim_start()[..1]).collect();
        assert!(listed.first() == Some(&"0"), "{sub:?}: {codes}");
        // `rekey help X` prints the same.
        let mut asked = vec!["help"];
        asked.extend(&sub);
        if sub.len() == 1 {
            assert_eq!(help(&asked), text, "{sub:?}");
        }
    }
    let codes_of = |sub: &str| {
        let text = help(&[sub, "--help"]);
        let codes = text.rsplit_once("Exit codes:\n").unwrap().1.to_string();
        codes
            .lines()
            .map(|l| l.trim_start()[..1].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(codes_of("status"), ["0", "1", "2", "3", "4"]);
    assert_eq!(codes_of("rotate"), ["0", "1", "2", "3", "4"]);
    assert_eq!(codes_of("recover"), ["0", "1", "2", "3"]);
    assert_eq!(codes_of("runs"), ["0", "1", "2"]);
    assert!(help(&["status", "--help"]).contains("whatever else is wrong"));
}

#[test]
fn the_manual_synopses_name_each_options_value() {
    let page = stdout_of(&["man"]);
    let synopsis = |sub: &str| {
        let start = page.find(&format!(".TH rekey-{sub} 1")).unwrap();
        let rest = &page[start..];
        let at = rest.find(".SH SYNOPSIS\n").unwrap() + ".SH SYNOPSIS\n".len();
        rest[at..].lines().next().unwrap().replace("\\-", "-")
    };
    let status = synopsis("status");
    for wanted in [
        "[--root <DIR>]",
        "[--as-of <TIME>]",
        "[--node <NAME>]...",
        "[--expires-within <DURATION>]",
    ] {
        assert!(status.contains(wanted), "{wanted}: {status}");
    }
    let recover = synopsis("recover");
    assert!(recover.contains("--reason <TEXT>"), "{recover}");
    assert!(
        recover.contains("(--node <NAME>... | --service <NAME>... | --all)"),
        "{recover}"
    );
    assert!(
        synopsis("apply").ends_with("<PLAN>"),
        "{}",
        synopsis("apply")
    );
}
