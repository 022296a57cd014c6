//! Names rekey did not choose are shown escaped on terminal streams (docs/design.md §5, "Names on
//! a terminal"): a node owner who names a directory `ESC[2J…` or puts a newline in it cannot
//! clear the screen or forge a healthy row of the status table, on stdout or on stderr. The JSON
//! outputs carry the name exactly as it is.

mod common;

use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// A node directory whose name clears the screen and then prints a forged row on a new line.
const FORGED: &str =
    "n0\x1b[2J\x1b[H\nn1  kms  cert  2027-02-26  90d 0h  yes  healthy  forged\tx\x7f";
const SHOWN: &str =
    "n0\\x1b[2J\\x1b[H\\nn1  kms  cert  2027-02-26  90d 0h  yes  healthy  forged\\tx\\x7f";

#[test]
fn control_characters_in_names_are_escaped_on_terminal_streams_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &[IdentitySpec::new("n1", "mocctl", issued(30))],
    );
    std::fs::create_dir_all(root.join("nodes").join(FORGED).join("kms")).unwrap();
    let plan = dir.path().join("plan.toml");
    for args in [
        &["status"][..],
        &["plan"],
        &["plan", "-o", plan.to_str().unwrap()],
        &["rotate", "--dry-run"],
    ] {
        let (code, stdout, stderr) = run(root, args);
        assert_eq!(code, 4, "{args:?}: {stderr}");
        let (shown, other) = if args[0] == "status" {
            (&stdout, &stderr)
        } else {
            (&stderr, &stdout)
        };
        assert!(
            shown.contains(&format!("nodes/{SHOWN}")),
            "{args:?}: the name is shown escaped:\n{shown}"
        );
        for text in [&stdout, &stderr] {
            if text == other && args[0] != "status" {
                continue; // the plan itself is TOML, escaped by TOML's rules
            }
            assert!(!text.contains('\x1b'), "{args:?}: a raw ESC:\n{text}");
            assert!(!text.contains('\x7f'), "{args:?}: a raw DEL:\n{text}");
            assert!(
                !text.lines().any(|l| l.starts_with("n1  kms")),
                "{args:?}: a forged line:\n{text}"
            );
        }
    }
    let (_, json, _) = run(root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let paths: Vec<&str> = doc["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&format!("nodes/{FORGED}").as_str()),
        "JSON keeps the name exactly: {paths:?}"
    );
    let toml = std::fs::read_to_string(&plan).unwrap();
    let parsed: toml::Table = toml.parse().unwrap();
    assert_eq!(
        parsed["issue"][0]["path"].as_str(),
        Some(format!("nodes/{FORGED}").as_str()),
        "the plan keeps the name exactly"
    );
}

/// The error chain is printed escaped in one place: a root named with control characters.
#[test]
fn an_error_naming_a_path_shows_it_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no\x1b[31msuch\nroot");
    let out = rekey()
        .arg("status")
        .arg("--root")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no\\x1b[31msuch\\nroot"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}
