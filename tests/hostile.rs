//! The hostile-input corpus: every case under `fixtures/hostile/` (see make-hostile.sh) runs the
//! real binary on a clean two-identity fleet with the case laid over it, and must end with the
//! documented exit code and a message naming the offending file: no panic, no hang, nothing
//! changed. A new case is a new folder, not new code.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{rekey, snapshot};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    exit: i32,
    message: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    special: Vec<Vec<String>>,
    /// `["truncate"]`, `["cut-at-identity"]` (cut where the last identity begins),
    /// `["pad-over-64mib"]` (a comment past apply's limit), `["duplicate"]` (the first identity
    /// block again at the end),
    /// `["line", prefix, line]` (the line starting with prefix replaced), or pairs of (text,
    /// replacement), each replacing every occurrence, in order.
    #[serde(default)]
    plan_edit: Vec<String>,
    /// The run date of `apply`, when it differs from the plan's `as_of`.
    #[serde(default)]
    run_as_of: Option<String>,
    /// Arguments after the command's own (`{run:N}` is the N-th run id).
    #[serde(default)]
    args: Vec<String>,
    /// Commands run first, on the fleet, before anything is compared.
    #[serde(default)]
    setup: Vec<Vec<String>>,
    /// The command rightly changes the fleet (a rotation whose hook fails stays in place).
    #[serde(default)]
    changes: bool,
    /// Environment of the command (`TMPDIR` where no temporary file can be made).
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn cp(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The clean fleet every case starts from: the openssl fixture's CA and two sound identities.
fn base(root: &Path) {
    let fleet = fixtures().join("openssl-rsa");
    cp(&fleet.join("ca"), &root.join("ca"));
    for id in ["nodes/n1/mocctl", "nodes/n1/kms"] {
        cp(&fleet.join(id), &root.join(id));
    }
}

/// Makes what no repository can hold; the returned values must live as long as the run.
fn special(root: &Path, spec: &[String]) -> Option<std::os::unix::net::UnixListener> {
    let path = root.join(&spec[1]);
    // What changes who may write an existing file (docs/design.md §8): its mode, or its owner.
    match spec[0].as_str() {
        "mode" => {
            let mode = u32::from_str_radix(&spec[2], 8).expect("an octal mode");
            let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
            std::fs::set_permissions(&path, perms).unwrap();
            return None;
        }
        "owner" => {
            let uid: u32 = spec[2].parse().expect("a uid");
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
            return None;
        }
        _ => {}
    }
    let _ = std::fs::remove_file(&path);
    match spec[0].as_str() {
        "fifo" => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        "socket" => return Some(std::os::unix::net::UnixListener::bind(&path).unwrap()),
        "sparse" => std::fs::File::create(&path)
            .unwrap()
            .set_len(2 << 30)
            .unwrap(),
        "huge" => std::fs::write(&path, vec![b'a'; 1_100_000]).unwrap(),
        "link" => symlink(&spec[2], &path).unwrap(),
        "dir" => std::fs::create_dir_all(&path).unwrap(),
        "remove" => assert!(!path.exists(), "removed above"),
        "non-utf8-dir" => {
            let mut name = path.into_os_string().into_encoded_bytes();
            name.push(0xff);
            // SAFETY: the bytes came from an OsString with one more byte appended; on Unix any
            // byte sequence is a valid OsStr.
            std::fs::create_dir_all(unsafe {
                std::ffi::OsString::from_encoded_bytes_unchecked(name)
            })
            .unwrap();
        }
        "deep" => {
            let mut deep = path;
            for i in 0..200 {
                deep.push(format!("d{i}"));
            }
            std::fs::create_dir_all(&deep).unwrap();
            std::fs::write(deep.join("cert.pem"), "deep files are not identities").unwrap();
        }
        other => panic!("unknown special {other:?}"),
    }
    None
}

fn run_case(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap())
        .map_err(|e| format!("{name}: bad case.toml: {e}"))?;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fleet");
    base(&root);
    if dir.join("root").is_dir() {
        cp(&dir.join("root"), &root);
    }
    let _keep: Vec<_> = case.special.iter().map(|s| special(&root, s)).collect();
    let as_of = case
        .as_of
        .clone()
        .unwrap_or_else(|| "2026-11-28T00:00:00Z".to_string());
    for step in &case.setup {
        let (command, args) = step.split_first().expect("a setup step names a command");
        let out = command_on(command, &root, &as_of, &substitute(args, &root))
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 3 | 4)),
            "{name}: setup {step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = snapshot(&root);
    let audit = std::fs::read(root.join(".rekey/audit.jsonl")).ok();
    let args = substitute(&case.args, &root);
    let mut cmd = match case.command.as_deref().unwrap_or("plan") {
        "apply" => {
            let plan = tmp.path().join("plan.toml");
            let made = rekey()
                .args(["plan", "--as-of", &as_of, "-o"])
                .arg(&plan)
                .arg("--root")
                .arg(&root)
                .output()
                .unwrap();
            assert!(
                matches!(made.status.code(), Some(3 | 4)),
                "{name}: the clean fleet plans"
            );
            let text = std::fs::read_to_string(&plan).unwrap();
            std::fs::write(
                &plan,
                edit_plan(&text, &case.plan_edit).map_err(|e| format!("{name}: {e}"))?,
            )
            .unwrap();
            let mut cmd = rekey();
            cmd.arg("apply")
                .arg(&plan)
                .args(["--as-of", case.run_as_of.as_deref().unwrap_or(&as_of)])
                .args(&args);
            cmd
        }
        command => command_on(command, &root, &as_of, &args),
    };
    let out = cmd
        .envs(&case.env)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wrong = Vec::new();
    if out.status.code() != Some(case.exit) {
        wrong.push(format!(
            "exit {:?}, expected {}",
            out.status.code(),
            case.exit
        ));
    }
    if !said.contains(&case.message) {
        wrong.push(format!("no {:?} in the output", case.message));
    }
    if said.contains("panicked") {
        wrong.push("a panic".to_string());
    }
    if !case.changes && snapshot(&root) != before {
        wrong.push("the fleet changed".to_string());
    }
    if std::fs::read(root.join(".rekey/audit.jsonl")).ok() != audit {
        wrong.push("the audit log changed".to_string());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}\n{said}", wrong.join("; ")))
    }
}

/// `rekey COMMAND` on the fleet at `root`, with the run date where the command takes one.
fn command_on(command: &str, root: &Path, as_of: &str, args: &[String]) -> assert_cmd::Command {
    let mut cmd = rekey();
    cmd.arg(command).args(args).arg("--root").arg(root);
    if !matches!(command, "rollback" | "runs" | "hooks") {
        cmd.args(["--as-of", as_of]);
    }
    cmd
}

/// `args` with each `{run:N}` replaced by the N-th run id of the fleet at `root`, and `{root}`
/// by the fleet's root.
fn substitute(args: &[String], root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    args.iter()
        .map(
            |a| match a.strip_prefix("{run:").and_then(|r| r.strip_suffix('}')) {
                Some(n) => ids[n.parse::<usize>().unwrap()].clone(),
                None => a.replace("{root}", root.to_str().unwrap()),
            },
        )
        .collect()
}

fn edit_plan(text: &str, edit: &[String]) -> Result<String, String> {
    Ok(match edit {
        [cut] if cut == "truncate" => text[..text.len() / 2].to_string(),
        // Cut exactly where the last identity begins: what is left parses as a whole plan.
        [cut] if cut == "cut-at-identity" => {
            let last = text
                .rfind("\n[[identity]]")
                .ok_or("no identity to cut at")?;
            text[..last + 1].to_string()
        }
        // Made larger than apply reads (64 MiB) by a comment, here rather than in the corpus.
        [pad] if pad == "pad-over-64mib" => {
            format!("{text}#{}\n", "x".repeat(64 << 20))
        }
        // The last table made larger than a plan's table can be (4 MiB) by a comment.
        [pad] if pad == "pad-last-table-over-4mib" => {
            format!("{text}#{}\n", "x".repeat(4 << 20))
        }
        [] => text.to_string(),
        [line, prefix, replacement] if line == "line" => text
            .lines()
            .map(|l| {
                if l.starts_with(prefix.as_str()) {
                    replacement.as_str()
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        [dup] if dup == "duplicate" => {
            let start = text
                .find("[[identity]]")
                .ok_or("no identity to duplicate")?;
            let end = text[start + 1..]
                .find("\n[[")
                .map_or(text.len(), |e| start + 1 + e);
            format!("{text}\n{}", &text[start..end])
        }
        pairs if !pairs.is_empty() && pairs.len() % 2 == 0 => pairs
            .chunks(2)
            .fold(text.to_string(), |t, p| t.replace(&p[0], &p[1])),
        other => return Err(format!("bad plan_edit {other:?}")),
    })
}

#[test]
fn every_hostile_case_gets_its_documented_outcome() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("hostile"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
