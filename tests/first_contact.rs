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

/// `rekey help` is a subcommand like the others: `help --help` describes it, `help COMMAND`
/// prints what `COMMAND --help` does, and an unknown COMMAND is a usage error.
#[test]
fn help_describes_itself_and_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = rekey_in(tmp.path(), &["help", "--help"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Usage: rekey help [COMMAND]"), "{stdout}");
    for command in ["status", "rotate", "help"] {
        let (code, via_help, _) = rekey_in(tmp.path(), &["help", command]);
        let (_, via_flag, _) = rekey_in(tmp.path(), &[command, "--help"]);
        assert_eq!(code, 0, "help {command}");
        assert_eq!(via_help, via_flag, "help {command}");
    }
    let (_, top, _) = rekey_in(tmp.path(), &["help"]);
    assert_eq!(top, rekey_in(tmp.path(), &["--help"]).1);
    let (code, _, stderr) = rekey_in(tmp.path(), &["help", "nosuch"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unrecognized subcommand 'nosuch'"),
        "{stderr}"
    );
}

/// `rekey --version` names the commit it was built from and its crypto backend.
#[test]
fn the_version_names_the_commit_and_the_crypto_backend() {
    let tmp = tempfile::tempdir().unwrap();
    for flag in ["--version", "-V"] {
        let (code, stdout, _) = rekey_in(tmp.path(), &[flag]);
        assert_eq!(code, 0);
        assert!(stdout.starts_with("rekey 0."), "{stdout}");
        assert!(stdout.contains("(commit "), "{stdout}");
        assert!(stdout.contains("crypto aws-lc-rs 1."), "{stdout}");
    }
}

/// Every count agrees with its noun, and `recover` does not tell its user to run `rekey recover`.
#[test]
fn counts_agree_with_their_nouns_and_recover_does_not_send_to_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let mut cert_only = rekey::fleet::IdentitySpec::new("n1", "mocctl", issued(30));
    cert_only.token = None;
    build(&one, &ca_spec(rekey::keys::KeyAlg::P256), &[cert_only]);
    let (code, _, stderr) = run(&one, &["plan"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("plan: 1 identity, 1 credential: 1 rotate, 0 keep, 0 recover, 0 skip"),
        "{stderr}"
    );

    // A plan an hour and a half old, under a policy that allows one hour.
    std::fs::write(
        one.join("rekey.toml"),
        "version = 1\nmax_plan_age_hours = 1\n",
    )
    .unwrap();
    let plan = tmp.path().join("plan.toml");
    let (code, _, stderr) = run(&one, &["plan", "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    let out = rekey()
        .arg("apply")
        .arg(&plan)
        .args(["--as-of", "2026-11-28T01:30:00Z"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is 1 hour old"), "{stderr}");

    let two = tmp.path().join("two");
    build(
        &two,
        &ca_spec(rekey::keys::KeyAlg::P256),
        &[
            rekey::fleet::IdentitySpec::new("n1", "mocctl", issued(93)),
            rekey::fleet::IdentitySpec::new("n1", "kms", issued(30)),
        ],
    );
    let recover = |service: &str| {
        run(
            &two,
            &[
                "recover",
                "--node",
                "n1",
                "--service",
                service,
                "--reason",
                "test",
            ],
        )
    };
    let (code, _, stderr) = recover("mocctl");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("would recover n1/mocctl: token expired 2026-11-25\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("run rekey recover"), "{stderr}");
    assert!(
        stderr.contains("add --yes to recover this identity"),
        "{stderr}"
    );
    let (code, _, stderr) = recover("kms");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("rekey: the selected identity is not in state recover"),
        "{stderr}"
    );
}

/// Run in the wrong folder, every command names `--root` and any fleet root nearby (an
/// ancestor or a subdirectory), and a writing command leaves nothing behind there.
#[test]
fn the_wrong_folder_names_root_and_the_fleet_nearby() {
    let tmp = tempfile::tempdir().unwrap();
    let top = std::fs::canonicalize(tmp.path()).unwrap();
    let fleet = top.join("fleet");
    build(
        &fleet,
        &ca_spec(rekey::keys::KeyAlg::P256),
        &[rekey::fleet::IdentitySpec::new("n1", "mocctl", issued(30))],
    );
    let empty = top.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let hint = "(run in the fleet root or pass --root DIR)";
    let try_fleet = format!(
        "found ca/ and nodes/ in {}: try --root {}",
        fleet.display(),
        fleet.display()
    );
    for command in ["status", "plan", "rotate", "runs"] {
        let (code, _, stderr) = rekey_in(&empty, &[command]);
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{} is not a fleet root: it holds no ca/, nodes/ or rekey.toml {hint}",
                empty.display()
            )),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("found"), "{command}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "a writing command in the wrong folder leaves nothing there"
    );
    for (cwd, what) in [
        (fleet.join("nodes/n1"), "an ancestor"),
        (top.clone(), "a child"),
    ] {
        let (code, _, stderr) = rekey_in(&cwd, &["status"]);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(stderr.contains(hint), "{what}: {stderr}");
        assert!(stderr.contains(&try_fleet), "{what}: {stderr}");
    }
}

/// A hidden directory under `nodes/` or in a node (an NFS `.snapshot`, a `.git`) is ignored and
/// counted, not a problem: the fleet exits as it would without it. Other names that are not
/// names stay problems.
#[test]
fn hidden_entries_are_ignored_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    build(
        root,
        &ca_spec(rekey::keys::KeyAlg::P256),
        &[rekey::fleet::IdentitySpec::new("n1", "mocctl", issued(30))],
    );
    let (clean, table, _) = run(root, &["status"]);
    assert_eq!(clean, 3, "{table}");
    assert!(!table.contains("hidden"), "{table}");
    std::fs::create_dir_all(root.join("nodes/.snapshot/hourly.0/n1/mocctl")).unwrap();
    std::fs::create_dir_all(root.join("nodes/n1/.git/objects")).unwrap();
    // The dry run exits as its run would: everything it would do goes well (0).
    for (args, want) in [
        (&["status"][..], clean),
        (&["plan"], clean),
        (&["rotate", "--dry-run"], 0),
    ] {
        let (code, stdout, stderr) = run(root, args);
        assert_eq!(code, want, "{args:?}: {stdout}{stderr}");
        assert!(!stdout.contains("problem"), "{args:?}: {stdout}");
        assert!(!stderr.contains("problem"), "{args:?}: {stderr}");
    }
    let (_, table, _) = run(root, &["status"]);
    assert!(
        table.contains(
            "\n\nnote: ignored 2 hidden entries (names starting with a dot under nodes/ or a node)\n"
        ),
        "{table}"
    );
    let (_, json, _) = run(root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["hidden_entries_ignored"], 2, "{json}");
    assert_eq!(doc["issues"], serde_json::json!([]), "{json}");

    std::fs::create_dir(root.join("nodes/n1/bad name")).unwrap();
    let (code, table, _) = run(root, &["status"]);
    assert_eq!(code, 4, "{table}");
    assert!(
        table.contains("problem: nodes/n1/bad name: is not a valid service name\nnote: ignored 2"),
        "{table}"
    );
}

/// Identities left mid-rename by a run that died: `status` says once on stderr what it waits
/// for (not once per identity), then reports them as being rewritten.
#[test]
fn status_says_once_what_it_waits_for() {
    let dir = copy_fixture("openssl-rsa");
    let root = dir.path();
    // The run that died: its journal, no report, and its temporary files.
    let run_id = "20261128T000000.000000Z";
    std::fs::create_dir_all(root.join(".rekey/runs").join(run_id)).unwrap();
    std::fs::write(
        root.join(".rekey/runs").join(run_id).join("journal.jsonl"),
        "",
    )
    .unwrap();
    for (id, file) in [("n1/mocctl", "cert.pem"), ("n1/kms", "token.jwt")] {
        let live = root.join("nodes").join(id).join(file);
        let temp = live.with_file_name(format!(".rekey-new.{run_id}.{file}"));
        std::fs::copy(&live, &temp).unwrap();
    }
    let (code, stdout, stderr) = run(root, &["status"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let waits: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rekey: waiting for a rekey run that is rewriting nodes/n1/"))
        .collect();
    assert_eq!(waits.len(), 1, "{stderr}");
    assert!(
        waits[0].ends_with(" is present); up to 10 s in all") && waits[0].contains("/.rekey-new."),
        "{stderr}"
    );
    assert!(
        stdout.contains("cert.pem is being rewritten by a rekey run that has not finished"),
        "{stdout}"
    );
}

/// `--progress always` where stderr is not a terminal (a file, a pipe, a CI log) prints plain
/// lines instead of a bar: at least the last one, even for a short run. `auto` prints none there.
#[test]
fn progress_always_prints_plain_lines_where_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<_> = (1..=3)
        .map(|n| rekey::fleet::IdentitySpec::new(&format!("n{n}"), "mocctl", issued(30)))
        .collect();
    let template = tmp.path().join("template");
    build(&template, &ca_spec(rekey::keys::KeyAlg::P256), &ids);
    let progress_line = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.starts_with("rekey: 3/3 identities, ") && l.contains("/s, done in "))
            .count()
    };
    for (i, (args, want)) in [
        (&["--progress", "always"][..], 1),
        (&["--progress", "always", "--format", "json"], 1),
        (&["--progress", "auto"], 0),
        (&["--progress", "never"], 0),
    ]
    .into_iter()
    .enumerate()
    {
        let root = tmp.path().join(format!("fleet-{i}"));
        copy(&template, &root);
        // stderr to a pipe; then to a file, as `2>file` does.
        let (code, stdout, stderr) = run(&root, &[&["rotate"][..], args].concat());
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert_eq!(progress_line(&stderr), want, "{args:?}: {stderr}");
        if want == 1 {
            let file = tmp.path().join(format!("stderr-{i}"));
            let again = tmp.path().join(format!("again-{i}"));
            copy(&template, &again);
            let status = Command::new(env!("CARGO_BIN_EXE_rekey"))
                .arg("rotate")
                .args(args)
                .arg("--root")
                .arg(&again)
                .args(["--as-of", AS_OF])
                .stderr(std::fs::File::create(&file).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
            let logged = std::fs::read_to_string(&file).unwrap();
            assert_eq!(progress_line(&logged), 1, "{args:?}: {logged}");
        }
    }
}

/// `rotate` judges the fleet as it goes: its progress counts every identity it handles, those it
/// passes by included, against what the selection lists, and its plan summary follows the run.
/// A run with nothing to rotate shows no progress.
#[test]
fn rotate_progress_counts_every_identity_it_judges_and_its_summary_follows_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Two due, three kept: the total is five, not two.
    let ids: Vec<_> = (1..=5)
        .map(|n| {
            let age = if n <= 2 { 30 } else { 0 };
            rekey::fleet::IdentitySpec::new(&format!("n{n}"), "mocctl", issued(age))
        })
        .collect();
    let root = tmp.path().join("fleet");
    build(&root, &ca_spec(rekey::keys::KeyAlg::P256), &ids);
    let (code, stdout, stderr) = run(&root, &["rotate", "--progress", "always"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let progress = lines
        .iter()
        .position(|l| l.starts_with("rekey: 5/5 identities, ") && l.contains("/s, done in "));
    let summary = lines
        .iter()
        .position(|l| l.starts_with("plan: 5 identities"));
    let (Some(progress), Some(summary)) = (progress, summary) else {
        panic!("a progress line over all five, and the plan summary:\n{stderr}");
    };
    assert!(progress < summary, "the summary follows the run:\n{stderr}");
    assert!(stderr.contains(": 4 rotate, 6 keep,"), "{stderr}");
    // Nothing left to rotate: no progress at all.
    let (code, stdout, stderr) = run(&root, &["rotate", "--progress", "always"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("/5 identities"), "{stderr}");
    assert!(stderr.contains(": 0 rotate, 10 keep,"), "{stderr}");
}

/// A certificate copied from `node-01/kms` into `node-02/kms`: with the policy's `subject_cn`
/// set, it is a problem for that identity (and left alone by `rotate`); unset, the fleet's
/// naming is its own.
#[test]
fn a_certificate_under_another_identitys_folder_is_a_problem_with_subject_cn() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = [
        rekey::fleet::IdentitySpec::new("node-01", "kms", issued(30)),
        rekey::fleet::IdentitySpec::new("node-02", "kms", issued(30)),
    ];
    build(root, &ca_spec(rekey::keys::KeyAlg::P256), &ids);
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(
            root.join("nodes/node-01/kms").join(file),
            root.join("nodes/node-02/kms").join(file),
        )
        .unwrap();
    }
    let unset = states(root);
    assert_eq!(unset["node-02/kms/cert"].0, "healthy", "{unset:?}");

    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nsubject_cn = \"{node}/{service}\"\n",
    )
    .unwrap();
    let set = states(root);
    assert_eq!(
        set["node-02/kms/cert"],
        (
            "problem".to_string(),
            "cert.pem subject CN \"node-01/kms\" does not match subject_cn \"{node}/{service}\" \
             (expected \"node-02/kms\")"
                .to_string()
        )
    );
    assert_eq!(set["node-02/kms/token"].0, "problem");
    // The file extends the built-in table, where kms renews its certificate itself.
    assert_eq!(set["node-01/kms/cert"].0, "healthy", "{set:?}");
    let (code, _, stderr) = run(root, &["plan"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("problem: ") && stderr.contains("node-02/kms: cert.pem subject CN"),
        "{stderr}"
    );
    let before = snapshot(root);
    let (code, stdout, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let after = snapshot(root);
    let changed = |id: &str| {
        ["cert.pem", "token.jwt"].iter().any(|f| {
            before.get(&format!("nodes/{id}/{f}")) != after.get(&format!("nodes/{id}/{f}"))
        })
    };
    assert!(changed("node-01/kms"), "{stdout}");
    assert!(
        !changed("node-02/kms"),
        "the copied certificate is left for a person"
    );
}
