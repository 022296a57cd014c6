//! The read commands stream the fleet (docs/design.md §7): identities are judged in a window of
//! 1,024 and given back in (node, service) order. These tests use fleets larger than the window,
//! with broken entries scattered through it, and check that every output is whole, in order,
//! and the same as what a writing command (which holds its survey) makes of the same fleet; that
//! a reader who stops early stops the survey; and that the one new thing the stream needs (a
//! temporary file for the table) fails with a clear error.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A writer's temporary file left in node `n`'s service `n` (`node-0n/svc-000n`) by a run that
/// has not finished (its journal is there, its report is not): a reader of that identity waits
/// for it (up to 10 s), saying so on stderr.
fn writers_leftover(root: &Path, n: usize) -> std::path::PathBuf {
    let run = root.join(".rekey/runs/20261128T000000.000000Z");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("journal.jsonl"), "").unwrap();
    let path = root.join(format!(
        "nodes/node-{n:02}/svc-{n:04}/.rekey-new.20261128T000000.000000Z.cert.pem"
    ));
    std::fs::write(&path, "a writer was here\n").unwrap();
    path
}

/// `rekey status --format FORMAT -o TARGET` on the fleet at `root`, to spawn.
fn status_to(root: &Path, format: &str, target: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"));
    command
        .args(["status", "--format", format, "--as-of", AS_OF, "--root"])
        .arg(root)
        .arg("-o")
        .arg(target);
    command
}

/// More identities than the stream's window, on 20 nodes, with a note (an empty directory), a
/// problem (a linked service directory) and a broken certificate among them.
fn big_fleet(root: &Path) -> usize {
    let n = 1_300;
    fleet(root, n, 10);
    std::fs::create_dir(root.join("nodes/node-05/svc-empty")).unwrap();
    std::os::unix::fs::symlink(
        root.join("nodes/node-03/svc-0003"),
        root.join("nodes/node-12/svc-link"),
    )
    .unwrap();
    std::fs::write(
        root.join("nodes/node-17/svc-0017/cert.pem"),
        "not a certificate\n",
    )
    .unwrap();
    n
}

#[test]
fn every_output_is_whole_and_in_order_across_many_windows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let n = big_fleet(root);

    let (code, out, err) = run(root, &["status", "--format", "json"]);
    assert_eq!(code, 4, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = doc["credentials"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * n, "a certificate and a token per identity");
    let keys: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("node"), s("service"), s("kind"))
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "credentials are in (node, service, kind) order, each once"
    );
    assert_eq!(doc["totals"]["identities"], n);
    assert_eq!(doc["totals"]["credentials"], 2 * n);
    assert_eq!(doc["totals"]["credentials_by_state"]["problem"], 2);
    let issues: Vec<(&str, bool)> = doc["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["path"].as_str().unwrap(), i["problem"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        issues,
        [
            ("nodes/node-05/svc-empty", false),
            ("nodes/node-12/svc-link", true)
        ]
    );

    // The plan the stream writes is byte for byte the plan a writing command makes from the
    // survey it holds.
    let (code, streamed, err) = run(root, &["plan", "--format", "json"]);
    assert_eq!(code, 4, "{err}");
    let (code, held, err) = run(root, &["rotate", "--dry-run", "--format", "json"]);
    assert_eq!(code, 4, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&streamed).unwrap();
    assert_eq!(plan["identity"].as_array().unwrap().len(), n);
    // The identities the streamed plan rotates are those the run, from the survey it holds,
    // would rotate.
    let asked: Vec<String> = plan["identity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| ["cert", "token"].iter().any(|c| i[c]["action"] == "rotate"))
        .map(|i| {
            format!(
                "{}/{}",
                i["node"].as_str().unwrap(),
                i["service"].as_str().unwrap()
            )
        })
        .collect();
    let report: serde_json::Value = serde_json::from_str(&held).unwrap();
    let done: Vec<String> = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "done")
        .map(|i| {
            format!(
                "{}/{}",
                i["node"].as_str().unwrap(),
                i["service"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        asked, done,
        "plan (streamed) and rotate --dry-run (held) agree"
    );
    assert_eq!(plan["issue"].as_array().unwrap().len(), 1, "the link");
    assert!(err.contains(&format!("plan: {n} identities")), "{err}");

    // The table: aligned, one row per credential, the summary last.
    let (code, table, err) = run(root, &["status"]);
    assert_eq!(code, 4, "{err}");
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 1 + 2 * n);
    let state_at = rows[0].find("STATE").unwrap();
    assert!(
        rows.iter().all(|r| r[state_at - 2..state_at] == *"  "),
        "columns are aligned on every row"
    );
    assert!(
        table.contains(&format!("{n} identities, {} credentials", 2 * n)),
        "{table}"
    );

    // The metrics: each family's samples together, one per certificate and token.
    let prom = root.join("rekey.prom");
    let (code, _, err) = run(
        root,
        &[
            "status",
            "--format",
            "prometheus",
            "-o",
            prom.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{err}");
    let text = std::fs::read_to_string(&prom).unwrap();
    let mut families = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = &line[..line.find(['{', ' ']).unwrap()];
        if families.last() != Some(&name) {
            assert!(!families.contains(&name), "{name} is written in two places");
            families.push(name);
        }
    }
    let samples = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .count()
    };
    assert_eq!(
        samples("x509_cert_not_after"),
        n - 1,
        "every usable certificate"
    );
    assert_eq!(samples("x509_cert_expired"), n - 1);
    assert_eq!(samples("rekey_token_not_after_timestamp_seconds"), n);
}

/// `rekey status | head`: the reader goes away after the first lines; rekey stops its threads
/// and exits instead of waiting for the whole fleet to be judged for nobody.
#[test]
fn a_reader_that_stops_early_stops_the_survey() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    big_fleet(root);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(["status", "--format", "json", "--as-of", AS_OF, "--root"])
        .arg(root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("rekey status did not end after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        matches!(status.code(), Some(0 | 1 | 3 | 4)),
        "ends with an exit code, not a signal or a panic: {status:?}"
    );
}

/// The table's rows wait in an unnamed temporary file while its columns are measured: where
/// none can be made, the error says so and names TMPDIR; the JSON needs none.
#[test]
fn a_table_without_a_temporary_directory_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 10);
    let before = snapshot(&root);
    let missing = dir.path().join("no-such-tmp");
    let tmpdir = [("TMPDIR", missing.to_str().unwrap())];
    let (code, out, err) = run_env(&root, &["status"], &tmpdir);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("TMPDIR") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    let (code, out, err) = run_env(&root, &["status", "--format", "json"], &tmpdir);
    assert!(matches!(code, Some(0 | 3)), "{code:?} {err}");
    assert!(out.contains("\"credentials\""));
    assert_eq!(snapshot(&root), before, "nothing in the fleet changed");
}

/// A monitor watching one node reads only that node: a writer's leftover temporary file on
/// another node (which makes a reader of that identity wait, then report it as being rewritten)
/// neither delays it nor shows in what it says.
#[test]
fn a_filtered_survey_reads_only_what_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fleet(root, 40, 10);
    writers_leftover(root, 7);
    let (code, out, err) = run(root, &["status", "--node", "node-03", "--format", "json"]);
    assert!(matches!(code, 0 | 3), "{err}");
    assert!(!err.contains("waiting"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["totals"]["identities"], 2, "node-03's two identities");
    // Unfiltered, the same fleet does wait on node-07 and says so.
    let (_, out, err) = run(root, &["status", "--format", "json"]);
    assert!(
        err.contains("waiting for a rekey run that is rewriting nodes/node-07/svc-0007"),
        "{err}"
    );
    assert!(out.contains("is being rewritten"), "{out}");
}

/// `-o` while the fleet is being read: the output is made in an unnamed temporary file and
/// copied into place at the end, so a run stopped midway (`timeout`, systemd) leaves nothing
/// beside the target, not a partial `.rekey-tmp-*` per stopped run.
#[test]
fn a_run_stopped_midway_leaves_nothing_beside_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    std::fs::create_dir(&root).unwrap();
    big_fleet(&root);
    // A writer's leftover on the last node keeps the run waiting (up to 10 s) with most of
    // the output made.
    writers_leftover(&root, 19);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for format in ["json", "prometheus"] {
        let mut child = status_to(&root, format, &out.join("status.out"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "still reading when stopped"
        );
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{format}: {left:?}");
    }
}

/// An `-o` that cannot be written is refused before the fleet is read, not after: a writer's
/// leftover on the first identity (which keeps a reader waiting, and says so) is never reached.
#[test]
fn an_output_that_cannot_be_written_is_refused_before_the_fleet_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fleet(root, 40, 10);
    writers_leftover(root, 0);
    let missing = root.join("no-such-dir/out");
    let missing = missing.to_str().unwrap();
    let commands: [&[&str]; 3] = [
        &["status", "--format", "json", "-o", missing],
        &["status", "-o", missing],
        &["plan", "-o", missing],
    ];
    for args in commands {
        let (code, out, err) = run(root, args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("no file can be made in") && err.contains("no-such-dir"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("waiting"), "{args:?} read the fleet: {err}");
    }
    // A TMPDIR that takes no file (the output is made there first) is refused as early.
    let out = root.join("out.json");
    let (code, _, err) = run_env(
        root,
        &["status", "--format", "json", "-o", out.to_str().unwrap()],
        &[("TMPDIR", "/nonexistent/rekey-tmp")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("set TMPDIR"), "{err}");
    assert!(!err.contains("waiting"), "read the fleet: {err}");
    assert!(!out.exists());
}

/// A stop (`timeout`, Ctrl-C, a closed terminal) that lands while `-o`'s output is copied into
/// place waits for the rename: the process still ends by that signal, but the file is whole and
/// nothing is left beside it. strace (an independent tracer) delivers the signal at the first
/// fsync of the run, the output's.
#[test]
fn a_stop_while_the_output_is_put_in_place_waits_for_the_rename() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    std::fs::create_dir(&root).unwrap();
    fleet(&root, 6, 10);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("status.json");
    for (signal, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let mut strace = std::process::Command::new("strace");
        strace
            .args(["-f", "-o", "/dev/null", "-e", "trace=fsync", "-e"])
            .arg(format!("inject=fsync:signal={name}:when=1"))
            .arg(assert_cmd::cargo::cargo_bin("rekey"))
            .args(["status", "--format", "json", "--as-of", AS_OF, "--root"])
            .arg(&root)
            .arg("-o")
            .arg(&target);
        // A runner started in the background without job control ignores SIGINT, and rekey
        // keeps an ignored signal ignored (as under nohup): the child gets each signal's
        // default action, whatever the runner inherited.
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            strace.pre_exec(|| {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let run = strace
            .output()
            .expect("strace runs (apt-get install strace)");
        // strace ends as the traced process did.
        assert_eq!(
            run.status.signal(),
            Some(signal),
            "{name}: {:?} {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
        assert_eq!(
            doc["totals"]["identities"], 6,
            "{name}: the output is whole"
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["status.json"], "{name}");
        std::fs::remove_file(&target).unwrap();
    }
}

/// The file `-o` names is looked at again when the output is written: a link put in its place
/// while the fleet was read is refused and left as it is, not replaced.
#[test]
fn an_output_swapped_for_a_link_during_the_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    std::fs::create_dir(&root).unwrap();
    fleet(&root, 4, 10);
    // A writer's leftover keeps the run waiting (up to 10 s) before it writes.
    writers_leftover(&root, 3);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("status.prom");
    std::fs::write(&target, "OLD\n").unwrap();
    std::fs::write(out.join("elsewhere"), "ELSEWHERE\n").unwrap();
    let child = status_to(&root, "prometheus", &target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink("elsewhere", &target).unwrap();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(err.contains("status.prom is a symbolic link"), "{err}");
    assert!(
        std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("elsewhere")).unwrap(),
        "ELSEWHERE\n"
    );
}

/// `-o` replaces a regular file, or makes a new one, and nothing else: a directory, a link
/// (which in a shared directory could point anywhere), a named pipe or a device (`-o /dev/null`
/// run as root) is refused before the fleet is read and left as it was. A file replaced keeps
/// its mode; `-o -` is stdout for every command.
#[test]
fn an_output_replaces_only_a_regular_file_and_keeps_its_mode() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    std::fs::create_dir(&root).unwrap();
    fleet(&root, 4, 10);
    let leftover = writers_leftover(&root, 0);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("real.prom"), "OLD\n").unwrap();
    std::os::unix::fs::symlink("real.prom", out.join("link.prom")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x", out.join("dangling.prom")).unwrap();
    let fifo = std::ffi::CString::new(out.join("pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(out.join("adir")).unwrap();
    for (name, what) in [
        ("link.prom", "a symbolic link"),
        ("dangling.prom", "a symbolic link"),
        ("pipe", "a named pipe"),
        ("adir", "a directory"),
    ] {
        let target = out.join(name);
        for args in [
            &["status", "--format", "prometheus", "-o"][..],
            &["plan", "-o"][..],
        ] {
            let mut args = args.to_vec();
            args.push(target.to_str().unwrap());
            let (code, _, err) = run(&root, &args);
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(
                err.contains(&format!("{name} is {what}")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("waiting"), "{args:?} read the fleet: {err}");
        }
    }
    let kind = |name: &str| {
        std::fs::symlink_metadata(out.join(name))
            .unwrap()
            .file_type()
    };
    assert!(kind("link.prom").is_symlink() && kind("dangling.prom").is_symlink());
    assert!(kind("pipe").is_fifo() && kind("adir").is_dir());
    assert_eq!(
        std::fs::read_to_string(out.join("real.prom")).unwrap(),
        "OLD\n"
    );
    std::fs::remove_file(&leftover).unwrap();
    // A regular file is replaced, and keeps its mode.
    let report = out.join("report.json");
    std::fs::write(&report, "OLD\n").unwrap();
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = run(
        &root,
        &["status", "--format", "json", "-o", report.to_str().unwrap()],
    );
    assert!(matches!(code, 0 | 3), "{err}");
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("\"credentials\"")
    );
    let mode = std::fs::metadata(&report).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the replaced file's mode");
    // `-o -` is stdout for every command, and makes no file named `-`.
    for args in [
        &["status", "--format", "json", "-o", "-"][..],
        &["plan", "--format", "json", "-o", "-"][..],
    ] {
        let (code, stdout, err) = run(&root, args);
        assert!(matches!(code, 0 | 3), "{args:?}: {err}");
        assert!(stdout.trim_start().starts_with('{'), "{args:?}: {stdout}");
    }
    assert!(!Path::new("-").exists());
}

/// A `--node` whose directory holds no service directory names nothing: exit 2, before any
/// output.
#[test]
fn a_node_with_nothing_in_it_is_not_a_selector() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fleet(root, 3, 10);
    std::fs::create_dir(root.join("nodes/node-empty")).unwrap();
    for command in ["status", "plan"] {
        let (code, out, err) = run(root, &[command, "--node", "node-empty"]);
        assert_eq!(code, 2, "{command}: {out}{err}");
        assert!(
            err.contains("--node node-empty matches no identity"),
            "{err}"
        );
        assert!(out.is_empty(), "{out}");
    }
}

/// A file mounted over a credential's name (a bind mount, as a container runtime mounts a
/// single secret file) lists the inode beneath it in its directory, not the one a reader opens:
/// the reader, which checks each name against one listing of the directory after reading it,
/// looks at such a name itself and reads the identity as it is, never as being rewritten.
/// Needs the right to mount (root, outside a container that forbids it); without it the test
/// says so and checks nothing.
#[test]
fn a_file_mounted_over_a_credential_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 3, 10);
    let id = root.join("nodes/node-01/svc-0001");
    let copy = dir.path().join("cert.pem");
    std::fs::copy(id.join("cert.pem"), &copy).unwrap();
    let target = id.join("cert.pem");
    let mount = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&copy)
        .arg(&target)
        .output();
    match mount {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipped: cannot bind-mount a file here ({other:?})");
            return;
        }
    }
    /// Unmounts on the way out, also when an assertion fails.
    struct Mounted<'a>(&'a Path);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _mounted = Mounted(&target);
    let listed = std::fs::read_dir(&id)
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.file_name() == "cert.pem")
        .map(|e| std::os::unix::fs::DirEntryExt::ino(&e))
        .unwrap();
    let opened = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&target).unwrap());
    assert_ne!(
        listed, opened,
        "the listing names the inode beneath the mount"
    );
    let (code, out, err) = run(&root, &["status", "--format", "json"]);
    assert!(matches!(code, 0 | 3), "{err}");
    assert!(!err.contains("waiting"), "{err}");
    assert!(!out.contains("is being rewritten"), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["totals"]["identities"], 3, "{out}");
    assert_eq!(doc["totals"]["problems"], 0, "{out}");
}
