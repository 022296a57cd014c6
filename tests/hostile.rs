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
    #[serde(default)]
    plan_edit: Vec<String>,
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
    let before = snapshot(&root);
    let mut cmd = rekey();
    match case.command.as_deref().unwrap_or("plan") {
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
                made.status.code() == Some(3),
                "{name}: the clean fleet plans"
            );
            let mut text = std::fs::read_to_string(&plan).unwrap();
            text = match case.plan_edit.as_slice() {
                [cut] if cut == "truncate" => text[..text.len() / 2].to_string(),
                [from, to] => text.replacen(from.as_str(), to, 1),
                other => return Err(format!("{name}: bad plan_edit {other:?}")),
            };
            std::fs::write(&plan, text).unwrap();
            cmd.arg("apply").arg(&plan).args(["--as-of", &as_of]);
        }
        command => {
            cmd.args([command, "--as-of", &as_of])
                .arg("--root")
                .arg(&root);
        }
    }
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
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
    if snapshot(&root) != before {
        wrong.push("the fleet changed".to_string());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}\n{said}", wrong.join("; ")))
    }
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
