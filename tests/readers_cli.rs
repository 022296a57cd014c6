//! Readers without the CA key (docs/design.md §1, §5): `status` and `plan` run as an
//! unprivileged user who cannot read `ca/ca.key` (the header says so), writing commands refuse
//! with a clear error, and a key readable by group or others is warned about. The unprivileged
//! runs use `setpriv` (util-linux) as `nobody`, so these tests run as root, as CI does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fleet every user can read, except `ca/ca.key` (0600, root's); and a copy of the binary
/// where `nobody` can run it (the build directory may not be reachable for it).
fn shared_fleet() -> (tempfile::TempDir, PathBuf, PathBuf) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests switch to the user nobody with setpriv, and so must run as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let root = dir.path().join("fleet");
    let ids = [
        IdentitySpec::new("n1", "mocctl", issued(30)),
        IdentitySpec::new("n1", "kms", issued(2)),
    ];
    build(&root, &ca_spec(KeyAlg::P256), &ids);
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let mode = if entry.file_type().is_dir() {
            0o755
        } else {
            0o644
        };
        chmod(entry.path(), mode);
    }
    chmod(&root.join("ca/ca.key"), 0o600);
    let bin = dir.path().join("rekey");
    std::fs::copy(assert_cmd::cargo::cargo_bin("rekey"), &bin).unwrap();
    chmod(&bin, 0o755);
    (dir, root, bin)
}

/// Runs `bin args` as `nobody`; returns (exit code, stdout, stderr).
fn as_nobody(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let run = || {
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(bin)
            .args(args)
            .args(["--as-of", AS_OF])
            .current_dir("/")
            .output()
            .expect("setpriv (util-linux) runs")
    };
    // The copy of the binary was just written: a process another test forked meanwhile may
    // still hold it open for writing until it execs (ETXTBSY), for a moment.
    let mut out = run();
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        out = run();
    }
    (
        out.status.code().expect("rekey exits with a code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_and_plan_run_for_a_user_who_cannot_read_the_ca_key() {
    let (_dir, root, bin) = shared_fleet();
    let r = root.to_str().unwrap();
    let (code, stdout, stderr) = as_nobody(&bin, &["status", "--root", r]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("key present, not readable by you"),
        "{stdout}"
    );
    let judged = stdout
        .lines()
        .any(|l| l.starts_with("n1") && l.contains("mocctl") && l.contains(" due "));
    assert!(judged, "the fleet is judged: {stdout}");
    let (code, stdout, stderr) = as_nobody(&bin, &["status", "--root", r, "--format", "json"]);
    assert_eq!(code, 3, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["ca"]["key"], "not_readable");
    let (code, plan, stderr) = as_nobody(&bin, &["plan", "--root", r]);
    assert_eq!(code, 3, "{stderr}");
    assert!(plan.contains("action = \"rotate\""), "{plan}");
    assert!(
        !stderr.contains("warning"),
        "a 0600 key is as it should be: {stderr}"
    );
}

#[test]
fn writing_commands_refuse_a_ca_key_they_cannot_read() {
    let (_dir, root, bin) = shared_fleet();
    // nobody owns the fleet (so it may take the lock), but not the CA key.
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::chown(root.join("ca/ca.key"), Some(0), Some(0)).unwrap();
    let before = snapshot(&root);
    let (code, stdout, stderr) = as_nobody(&bin, &["rotate", "--root", root.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("ca.key is not readable by this user: writing commands need it"),
        "{stderr}"
    );
    assert_eq!(snapshot(&root), before, "nothing written");
}

#[test]
fn a_ca_key_readable_by_group_or_others_is_warned_about() {
    let (_dir, root, _bin) = shared_fleet();
    for (mode, who) in [
        (0o640, "its group"),
        (0o604, "others"),
        (0o644, "group and others"),
    ] {
        chmod(&root.join("ca/ca.key"), mode);
        let (_, _, stderr) = run(&root, &["status"]);
        let wanted = format!("is readable by {who} (mode {mode:04o})");
        assert!(stderr.contains(&wanted), "{wanted}: {stderr}");
        let (_, _, stderr) = run(&root, &["plan"]);
        assert!(stderr.contains(&wanted), "{wanted}: {stderr}");
    }
}

/// Keys and tokens 0600, certificates 0644, as rekey itself leaves them; `wholly` names an
/// identity whose certificate is 0600 too (nothing of it readable by another user).
fn private_modes(root: &Path, wholly: &str) {
    for entry in walkdir::WalkDir::new(root.join("nodes")) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_str().unwrap();
        if matches!(name, "key.pem" | "token.jwt") {
            chmod(entry.path(), 0o600);
        }
    }
    chmod(&root.join("nodes").join(wholly).join("cert.pem"), 0o600);
}

#[test]
fn a_reader_who_cannot_read_keys_and_tokens_sees_every_certificate_it_can_read() {
    let (_dir, root, bin) = shared_fleet();
    let r = root.to_str().unwrap();
    private_modes(&root, "n1/kms");
    // n1/mocctl: due; n1/kms: nothing readable.
    let (code, stdout, stderr) = as_nobody(&bin, &["status", "--root", r]);
    assert_eq!(
        code, 3,
        "judged on what it can read (a due certificate): {stdout}{stderr}"
    );
    assert!(
        !stdout.contains(" problem ") && !stdout.contains("next: fix"),
        "nothing unreadable is a problem: {stdout}"
    );
    assert!(!stdout.contains("Permission denied"), "{stdout}");
    let row = |kind: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with("n1") && l.contains("mocctl") && l.contains(kind))
            .unwrap_or_else(|| panic!("no n1/mocctl {kind} row: {stdout}"))
            .to_string()
    };
    let cert = row(" cert ");
    assert!(cert.contains("2027-") && cert.contains(" due "), "{cert}");
    assert!(cert.contains("key.pem is not readable by you"), "{cert}");
    let token = row(" token ");
    assert!(
        token.contains(" unreadable ") && token.contains("not readable by you"),
        "{token}"
    );
    let blind: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("n1  ") && l.contains(" kms "))
        .collect();
    assert_eq!(
        blind.len(),
        1,
        "said once for an identity with nothing readable: {stdout}"
    );
    assert!(
        blind[0].contains("nothing here is readable by you"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not readable by you: 4 files")
            && stdout.contains("nothing is readable of 1 identity"),
        "{stdout}"
    );

    let (code, json, stderr) = as_nobody(&bin, &["status", "--root", r, "--format", "json"]);
    assert_eq!(code, 3, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let creds = doc["credentials"].as_array().unwrap();
    let find = |service: &str, kind: &str| {
        creds
            .iter()
            .find(|c| c["service"] == service && c["kind"] == kind)
            .unwrap()
    };
    let cert = find("mocctl", "cert");
    assert_eq!(cert["readable"], true);
    assert!(cert["expires_at"].is_string(), "{cert}");
    assert_eq!(cert["not_checked"], serde_json::json!(["key match"]));
    let token = find("mocctl", "token");
    assert_eq!(token["readable"], false);
    assert_eq!(token["state"], "unreadable");
    assert_eq!(
        token["not_checked"],
        serde_json::json!(["expiry", "signature"])
    );
    assert_eq!(find("kms", "cert")["readable"], false);
    assert_eq!(doc["totals"]["problems"], 0);
    assert_eq!(doc["totals"]["unreadable_files"], 4);
    assert_eq!(doc["totals"]["identities_by_state"]["unreadable"], 1);

    // The metrics carry the certificate it can read.
    let (_, metrics, _) = as_nobody(&bin, &["status", "--root", r, "--format", "prometheus"]);
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("x509_cert_not_after{"))
        .collect();
    assert_eq!(samples.len(), 1, "{metrics}");
    assert!(samples[0].contains("service=\"mocctl\""), "{metrics}");

    // A run store it may not read: the pending hooks are not known, and said so.
    std::fs::create_dir_all(root.join(".rekey/runs")).unwrap();
    chmod(&root.join(".rekey"), 0o700);
    let (code, stdout, _) = as_nobody(&bin, &["status", "--root", r]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("pending hooks: not known"), "{stdout}");
    let (_, json, _) = as_nobody(&bin, &["status", "--root", r, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(doc["pending_hooks"].is_null(), "{}", doc["pending_hooks"]);

    // The monitor's question is answered on what it can read.
    let (code, _, _) = as_nobody(&bin, &["status", "--root", r, "--expires-within", "7d"]);
    assert_eq!(code, 0);
    let (code, _, _) = as_nobody(&bin, &["status", "--root", r, "--expires-within", "70d"]);
    assert_eq!(code, 3, "n1/mocctl expires in 60 days");
}

#[test]
fn a_certificate_whose_key_does_not_match_still_shows_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut broken = IdentitySpec::new("n1", "kms", issued(2));
    broken.flaw = Some(rekey::fleet::Flaw::KeyMismatch);
    build(root, &ca_spec(KeyAlg::P256), &[broken]);
    let (code, stdout, _) = run(root, &["status", "--format", "json"]);
    assert_eq!(code, 4);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cert = &doc["credentials"][0];
    assert_eq!(cert["state"], "problem");
    assert!(
        cert["reason"].as_str().unwrap().contains("does not match"),
        "{cert}"
    );
    assert!(
        cert["expires_at"].is_string(),
        "the expiry is shown: {cert}"
    );
}
