//! What a new user meets in the first ten minutes, through the real binary: the demo, the help,
//! the version, progress in a pipeline log, a crashed run's leftovers, hidden directories, the
//! wrong folder, the wording of counts, and a certificate copied into another identity's folder.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// (exit code, stdout, stderr) of `rekey ARGS` run in `cwd`, with no `--root` or `--as-of` added.
fn rekey_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = rekey()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("rekey runs");
    (
        out.status.code().expect("rekey exits with a code"),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

fn plan_summary_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start_matches('\r').starts_with("plan: "))
        .count()
}

/// `rekey demo` shows the plan summary of its rotate once, whether its output is piped or on a
/// terminal (where stdout and stderr are one screen).
#[test]
fn the_demo_prints_the_plan_summary_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (code, stdout, stderr) = rekey_in(tmp.path(), &["demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        plan_summary_lines(&stdout) + plan_summary_lines(&stderr),
        1,
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // On a terminal, through script(1) where it is installed.
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped the terminal half: script(1) is not installed");
        return;
    }
    let line = format!(
        "'{}' demo --dir '{}'",
        env!("CARGO_BIN_EXE_rekey"),
        dir.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert_eq!(plan_summary_lines(&screen), 1, "{screen}");
}
