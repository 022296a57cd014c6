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
