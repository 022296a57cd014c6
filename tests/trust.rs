//! rekey runs as root over files other users can write (docs/design.md §8). Each test here is an
//! attack by an unprivileged account (`nobody`, through `setpriv`) on a `rekey rotate` run as
//! root, and checks that root neither writes outside the fleet nor runs what that account chose.
//! These tests run as root, as CI does.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::*;

const NOBODY: u32 = 65534;

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests act as the user nobody with setpriv, and so must run as root (CI does)"
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A fleet of `n` identities that `nobody` can reach (the directories on the way are 0755), and
/// a directory outside it with a `cert.pem` of its own: where an attack would make root write.
fn reachable_fleet(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let root = dir.path().join("fleet");
    fleet(&root, n, 80);
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for name in FILES {
        std::fs::write(outside.join(name), "root's own file\n").unwrap();
    }
    (dir, root, outside)
}

/// Runs `script` with `sh -c` as `nobody`.
fn as_nobody(script: &str) {
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", script])
        .current_dir("/")
        .status()
        .expect("setpriv (util-linux) runs");
    assert!(status.success(), "as nobody: {script}");
}

/// Runs `rotate args` as root until it reaches the write protocol's `step`, lets `during` act on
/// the fleet there, then lets it finish; returns (code, stdout, stderr).
fn rotate_paused_at(
    root: &Path,
    step: &str,
    args: &[&str],
    during: impl FnOnce(),
) -> (i32, String, String) {
    let args = [&["rotate", "--as-of", AS_OF][..], args].concat();
    paused_at(root, step, &args, during)
}

/// The node owner swaps its service directory for a link to a directory of root's while rotate
/// works on it. Before the fix, rotate wrote the new cert.pem, key.pem and token.jwt into that
/// directory and said `done`.
#[test]
fn a_service_directory_swapped_for_a_link_mid_run_is_never_written_through() {
    for step in ["surveyed", "prepared", "staged", "ready"] {
        let (_dir, root, outside) = reachable_fleet(2);
        let node = root.join("nodes/node-00");
        chown(&node, NOBODY);
        let swap = format!(
            "cd {} && mv svc-0000 .svc-0000-real && ln -s {} svc-0000",
            node.display(),
            outside.display()
        );
        let (code, _, stderr) = rotate_paused_at(&root, step, &[], || as_nobody(&swap));
        let mut there: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        there.sort();
        assert_eq!(there, FILES, "{step}: nothing new outside the fleet");
        for name in FILES {
            assert_eq!(
                std::fs::read_to_string(outside.join(name)).unwrap(),
                "root's own file\n",
                "{step}: {name} outside the fleet was replaced: {stderr}"
            );
        }
        let report = reports(&root).pop().unwrap();
        let line = |service: &str| {
            report["identities"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["service"] == service)
                .cloned()
                .unwrap()
        };
        assert_eq!(line("svc-0001")["outcome"], "done", "{step}: the other one");
        let swapped = line("svc-0000");
        if step == "surveyed" {
            // Before staging: the identity cannot be opened without following the link.
            assert_eq!(code, 3, "{step}: {stderr}");
            assert_eq!(swapped["outcome"], "skipped", "{step}");
            let reason = swapped["reason"].as_str().unwrap();
            assert!(reason.contains("symbolic link"), "{reason}");
        } else if step == "prepared" || step == "staged" {
            // Caught before `ready`: the identity is left as it was, and says why.
            assert_eq!(code, 3, "{step}: {stderr}");
            assert_eq!(swapped["outcome"], "failed", "{step}");
            let reason = swapped["reason"].as_str().unwrap();
            assert!(reason.contains("was moved or replaced"), "{reason}");
            assert!(temp_files(&root).is_empty(), "{:?}", temp_files(&root));
        } else {
            // Swapped after `ready`: the renames happen in the directory that was staged in,
            // wherever its owner moved it, and the run says the identity was not done.
            let real = node.join(".svc-0000-real");
            let cert = std::fs::read_to_string(real.join("cert.pem")).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{step}");
            assert!(temp_files(&root).is_empty(), "{:?}", temp_files(&root));
            assert_eq!(code, 3, "{step}: {stderr}");
            assert_eq!(swapped["outcome"], "failed", "{step}");
            let reason = swapped["reason"].as_str().unwrap();
            assert!(
                reason.contains("was moved away while its files"),
                "{reason}"
            );
        }
    }
}

/// The node owner puts another directory, with copies of the same files, at the name of the
/// one rekey judged: the files' digests still match, but the directory is not the one judged.
#[test]
fn a_service_directory_replaced_after_it_was_judged_is_left_alone() {
    let (_dir, root, _) = reachable_fleet(1);
    let node = root.join("nodes/node-00");
    chown(&node, NOBODY);
    let swap = format!(
        "cd {} && mv svc-0000 .svc-0000-judged && mkdir svc-0000 && cp .svc-0000-judged/* svc-0000/",
        node.display()
    );
    let before = std::fs::read(node.join("svc-0000/cert.pem")).unwrap();
    // nobody cannot read root's files to copy them: let it.
    for entry in std::fs::read_dir(node.join("svc-0000")).unwrap() {
        chmod(&entry.unwrap().path(), 0o644);
    }
    let (code, _, stderr) = rotate_paused_at(&root, "surveyed", &[], || as_nobody(&swap));
    assert_eq!(code, 3, "{stderr}");
    let report = reports(&root).pop().unwrap();
    let line = &report["identities"][0];
    assert_eq!(line["outcome"], "skipped");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("replaced since it was judged"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(node.join("svc-0000/cert.pem")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(node.join(".svc-0000-judged/cert.pem")).unwrap(),
        before
    );
}

/// The account owns the fleet root (not `ca/` or `nodes/`): it plants a `.rekey` with a journal
/// whose pending post hook runs its command. Before the fix, root's next rotate ran it.
#[test]
fn a_journal_planted_where_others_can_write_is_never_acted_on() {
    for (name, owner, mode) in [
        ("a root the account owns", NOBODY, 0o755),
        ("a state directory open to all", 0, 0o777),
    ] {
        let (dir, root, _) = reachable_fleet(1);
        let proof = dir.path().join("ran-as-root");
        let planted = root.join(".rekey/runs/20200101T000000.000000Z");
        std::fs::create_dir_all(&planted).unwrap();
        let journal = [
            r#"{"op":"start","version":1,"run_id":"20200101T000000.000000Z","command":"rotate","as_of":"2020-01-01T00:00:00Z"}"#.to_string(),
            format!(
                r#"{{"op":"hooks","calls":[{{"call":1,"kind":"post","source":"--post-hook","command":"id > {}","shell":true}}]}}"#,
                proof.display()
            ),
            r#"{"op":"end","recovered":false}"#.to_string(),
        ];
        std::fs::write(planted.join("journal.jsonl"), journal.join("\n") + "\n").unwrap();
        std::fs::write(planted.join("hooks.pending"), "").unwrap();
        std::fs::write(planted.join("report.json"), "{}").unwrap();
        if owner == NOBODY {
            for path in walkdir::WalkDir::new(root.join(".rekey")) {
                chown(path.unwrap().path(), NOBODY);
            }
            chown(&root, NOBODY);
        } else {
            chmod(&root.join(".rekey"), mode);
        }
        let before = snapshot(&root);
        let (code, _, stderr) = run(&root, &["rotate"]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains("refusing to write"), "{name}: {stderr}");
        let named = if owner == NOBODY {
            root.clone()
        } else {
            root.join(".rekey")
        };
        assert!(
            stderr.contains(&format!("{} (owner uid", named.display())),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("chmod go-w"), "{name}: {stderr}");
        assert!(!proof.exists(), "{name}: the planted command ran");
        assert_eq!(snapshot(&root), before, "{name}: nothing written");
        // A reader names it and goes on.
        let (code, _, stderr) = run(&root, &["status"]);
        assert_eq!(code, 3, "{name}: {stderr}");
        assert!(
            stderr.contains("writing commands refuse to run"),
            "{name}: {stderr}"
        );
        assert!(!proof.exists(), "{name}: status ran the planted command");
    }
}

/// What supplies commands (`rekey.toml`, `hooks/`) must be root's alone, and never a link.
/// Before the fix, each of these commands ran as root.
#[test]
fn commands_come_only_from_files_only_root_can_change() {
    type Plant = fn(&Path, &Path);
    let cases: [(&str, Plant, &str); 5] = [
        (
            "a policy writable by all",
            |root, proof| {
                let policy = root.join("rekey.toml");
                std::fs::write(
                    &policy,
                    format!(
                        "version = 1\n[services.svc-0000]\nreload = \"id > {}\"\n",
                        proof.display()
                    ),
                )
                .unwrap();
                chmod(&policy, 0o666);
            },
            "rekey.toml",
        ),
        (
            "a hooks folder the account owns",
            |root, proof| {
                hook(root, proof);
                chown(&root.join("hooks"), NOBODY);
            },
            "hooks",
        ),
        (
            "a hook writable by all",
            |root, proof| {
                hook(root, proof);
                chmod(&root.join("hooks/deploy/reload"), 0o777);
            },
            "hooks/deploy/reload",
        ),
        (
            "a hook the account owns",
            |root, proof| {
                hook(root, proof);
                chown(&root.join("hooks/deploy/reload"), NOBODY);
            },
            "hooks/deploy/reload",
        ),
        (
            "a hooks folder that is a link to the account's directory",
            |root, proof| {
                let theirs = root.parent().unwrap().join("theirs");
                std::fs::create_dir_all(&theirs).unwrap();
                let script = theirs.join("reload");
                std::fs::write(&script, format!("#!/bin/sh\nid > {}\n", proof.display())).unwrap();
                chmod(&script, 0o755);
                std::fs::create_dir_all(root.join("hooks")).unwrap();
                symlink(&theirs, root.join("hooks/deploy")).unwrap();
            },
            "hooks/deploy",
        ),
    ];
    for (name, plant, unsafe_path) in cases {
        let (dir, root, _) = reachable_fleet(1);
        let proof = dir.path().join("ran-as-root");
        plant(&root, &proof);
        let before = snapshot(&root);
        let (code, _, stderr) = run(&root, &["rotate"]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}", root.join(unsafe_path).display())),
            "{name}: {stderr}"
        );
        assert!(!proof.exists(), "{name}: the command ran");
        assert_eq!(snapshot(&root), before, "{name}: nothing written");
        let (_, _, stderr) = run(&root, &["status"]);
        assert!(
            stderr.contains(&format!("warning: {}", root.join(unsafe_path).display())),
            "{name}: status names it: {stderr}"
        );
        // A preview never promises a run that would not start.
        for preview in [
            &["rotate", "--dry-run"][..],
            &["recover", "--all", "--reason", "preview"][..],
        ] {
            let (code, _, stderr) = run(&root, preview);
            assert_eq!(code, 1, "{name}: {preview:?}: {stderr}");
            assert!(stderr.contains("refusing to write"), "{name}: {stderr}");
        }
        assert!(!proof.exists(), "{name}: a preview ran the command");
    }
}

fn hook(root: &Path, proof: &Path) {
    std::fs::create_dir_all(root.join("hooks/deploy")).unwrap();
    let script = root.join("hooks/deploy/reload");
    std::fs::write(&script, format!("#!/bin/sh\nid > {}\n", proof.display())).unwrap();
    chmod(&script, 0o755);
}

/// A temporary file no unfinished run made (planted by a node's owner, or left by hand) is a
/// problem named at once: never a ten-second wait for every reader, never a stalled rotate.
#[test]
fn a_planted_temporary_file_is_a_problem_not_a_wait() {
    let (_dir, root, _) = reachable_fleet(2);
    for planted in [
        ".rekey-new.cert.pem",
        ".rekey-new.20990101T000000.000000Z.token.jwt",
    ] {
        let path = root.join("nodes/node-00/svc-0000").join(planted);
        std::fs::write(&path, "planted").unwrap();
        let (code, stdout, stderr) = run(&root, &["status", "--format", "json"]);
        assert_eq!(code, 4, "{planted}: {stderr}");
        assert!(!stderr.contains("waiting"), "{planted}: {stderr}");
        let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let reasons: Vec<&str> = status["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["service"] == "svc-0000")
            .map(|c| c["reason"].as_str().unwrap())
            .collect();
        assert!(
            reasons
                .iter()
                .all(|r| r.contains(planted) && r.contains("remove it")),
            "{planted}: {reasons:?}"
        );
        std::fs::remove_file(&path).unwrap();
    }
    let path = root.join("nodes/node-00/svc-0000/.rekey-new.cert.pem");
    std::fs::write(&path, "planted").unwrap();
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(!stderr.contains("waiting"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "planted");
}

/// Under `umask 000`, what rekey creates for itself is still private: run directories and
/// backups 0700, run files 0600.
#[test]
fn no_umask_widens_what_rekey_creates() {
    let (_dir, root, _) = reachable_fleet(2);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {} rotate --as-of {AS_OF} --root {}",
            assert_cmd::cargo::cargo_bin("rekey").display(),
            root.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in walkdir::WalkDir::new(root.join(".rekey")) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().mode() & 0o7777;
        let want = if entry.file_type().is_dir() {
            0o700
        } else {
            0o600
        };
        // Backups are the replaced files themselves (hard links): they keep their own mode.
        if entry.path().components().any(|c| c.as_os_str() == "backup")
            && entry.file_type().is_file()
        {
            continue;
        }
        assert_eq!(mode, want, "{}", entry.path().display());
    }
}

/// The node owner swaps its service directory after the renames, before the deploy hook runs:
/// for a link to a directory of root's, or for a directory of its own whose `key.pem` links to a
/// root-only secret. The hook would be handed paths that lead to that secret (copied out by
/// `cat "$REKEY_KEY"`). Before the fix it ran; now it is not run, and says why.
#[test]
fn a_deploy_hook_never_runs_in_a_directory_swapped_after_the_renames() {
    for swap_for in ["a link", "another directory"] {
        let (dir, root, outside) = reachable_fleet(1);
        std::fs::write(outside.join("key.pem"), "root's secret\n").unwrap();
        chmod(&outside.join("key.pem"), 0o600);
        let node = root.join("nodes/node-00");
        chown(&node, NOBODY);
        let copied = dir.path().join("copied");
        let put = match swap_for {
            "a link" => format!("ln -s {} svc-0000", outside.display()),
            _ => format!(
                "mkdir svc-0000 && ln -s {} svc-0000/key.pem",
                outside.join("key.pem").display()
            ),
        };
        let swap = format!(
            "cd {} && mv svc-0000 .svc-0000-real && {put}",
            node.display()
        );
        let hook = format!("cat \"$REKEY_KEY\" > {}", copied.display());
        let args = ["--format", "json", "--deploy-hook", &hook];
        let (code, stdout, stderr) =
            rotate_paused_at(&root, "committed", &args, || as_nobody(&swap));
        assert_eq!(code, 3, "{swap_for}: {stderr}");
        assert!(
            !copied.exists(),
            "{swap_for}: the hook ran: {:?}",
            std::fs::read_to_string(&copied)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let hook = &report["identities"][0]["hooks"][0];
        assert_eq!(hook["status"], "failed", "{swap_for}: {hook}");
        // Either the directory is no longer an identity at all, or not the one written in.
        let detail = hook["detail"].as_str().unwrap();
        assert!(
            detail.contains("moved or replaced") || detail.contains("no longer exists"),
            "{swap_for}: {hook}"
        );
    }
}

/// A deploy hook is handed the credential files open on descriptors 3, 4 and 5 (opened through
/// the identity's handle, no link followed), so it need not open a path its owner can change. A
/// `key.pem` its owner replaced with a link to a root-only secret after the renames is handed
/// neither as a descriptor nor as a path.
#[test]
fn a_deploy_hook_is_handed_its_files_never_a_link() {
    for swap in [false, true] {
        let (dir, root, outside) = reachable_fleet(1);
        std::fs::write(outside.join("key.pem"), "root's secret\n").unwrap();
        chmod(&outside.join("key.pem"), 0o600);
        let service = root.join("nodes/node-00/svc-0000");
        chown(&root.join("nodes/node-00"), NOBODY);
        chown(&service, NOBODY);
        let seen = dir.path().join("seen");
        let hook = format!(
            "echo \"fd=${{REKEY_KEY_FD:-none}} path=${{REKEY_KEY:-none}}\" > {seen}; \
             if [ -n \"$REKEY_KEY_FD\" ]; then cat <&4 >> {seen}; fi",
            seen = seen.display()
        );
        let mut key = String::new();
        let (code, _, stderr) =
            rotate_paused_at(&root, "committed", &["--deploy-hook", &hook], || {
                key = std::fs::read_to_string(service.join("key.pem")).unwrap();
                if swap {
                    as_nobody(&format!(
                        "cd {} && rm key.pem && ln -s {} key.pem",
                        service.display(),
                        outside.join("key.pem").display()
                    ));
                }
            });
        assert_eq!(code, 0, "swap {swap}: {stderr}");
        let seen = std::fs::read_to_string(&seen).unwrap();
        if swap {
            assert_eq!(seen, "fd=none path=none\n", "a link is handed to no hook");
        } else {
            let path = service.join("key.pem");
            assert_eq!(seen, format!("fd=4 path={}\n{key}", path.display()));
            assert!(
                key.contains("PRIVATE KEY"),
                "the new key, read from the descriptor"
            );
        }
    }
}

/// A directory its owner's own group may write (a user private group, as `umask 002` systems
/// make them: root's group here, whose only member is root) lets nobody else in: a fleet below
/// one is trusted. One a group with other members may write is not.
#[test]
fn a_group_only_the_owner_is_in_may_write() {
    let (dir, root, _) = reachable_fleet(1);
    chmod(dir.path(), 0o775);
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    std::os::unix::fs::lchown(dir.path(), None, Some(NOBODY)).unwrap();
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("mode 0775) is writable by its group or by others"),
        "{stderr}"
    );
}

/// A run killed before its renames, whose temporary file for one identity is then found wrong:
/// the replay leaves that identity as it was, and so never runs its deploy hook (before the fix
/// it ran the hook of a run that changed nothing there). The other identity is finished and its
/// hook runs, once.
#[test]
fn a_replay_runs_no_hook_for_an_identity_it_left_as_it_was() {
    let (dir, root, _) = reachable_fleet(2);
    let log = dir.path().join("ran");
    std::fs::create_dir_all(root.join("hooks/deploy")).unwrap();
    let hook = root.join("hooks/deploy/log");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$REKEY_RUN_ID $REKEY_SERVICE\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    chmod(&hook, 0o755);
    let (code, _, _) = run_env(&root, &["rotate"], &[("REKEY_CRASH_AT", "renaming")]);
    assert_eq!(code, None, "killed at its renames");
    let runs = root.join(".rekey/runs");
    let killed = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let killed = killed.file_name().to_string_lossy().into_owned();
    let temp = root
        .join("nodes/node-00/svc-0000")
        .join(format!(".rekey-new.{killed}.cert.pem"));
    std::fs::write(&temp, "not what was staged").unwrap();
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert!(matches!(code, 0 | 3), "{stderr}");
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !ran.contains(&format!("{killed} svc-0000")),
        "the hook of an identity left as it was ran: {ran}"
    );
    assert_eq!(
        ran.matches(&format!("{killed} svc-0001")).count(),
        1,
        "the finished identity's hook ran once: {ran}"
    );
}

/// A node owner who kept a second name of its own `key.pem` cannot change rekey's backup of it
/// after the rotation: a file its owner could still write is backed up as a copy, never linked.
/// Before the fix the backup was that very file, and rollback found it damaged.
#[test]
fn a_backup_is_never_a_file_its_owner_can_still_write() {
    let (_dir, root, _) = reachable_fleet(1);
    let node = root.join("nodes/node-00");
    for entry in walkdir::WalkDir::new(&node) {
        chown(entry.unwrap().path(), NOBODY);
    }
    let service = node.join("svc-0000");
    let old = std::fs::read(service.join("key.pem")).unwrap();
    as_nobody(&format!(
        "cd {} && mkdir .stash && ln svc-0000/key.pem .stash/key",
        node.display()
    ));
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    as_nobody(&format!(
        "echo tampered > {}",
        node.join(".stash/key").display()
    ));
    let report = reports(&root).pop().unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let backup = root.join(format!(
        ".rekey/runs/{run_id}/backup/node-00/svc-0000/key.pem"
    ));
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        old,
        "the backup holds the old key"
    );
    let meta = std::fs::symlink_metadata(&backup).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777, meta.nlink()),
        (0, 0o600, 1)
    );
    let out = rekey()
        .args(["rollback", run_id, "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(std::fs::read(service.join("key.pem")).unwrap(), old);
}
