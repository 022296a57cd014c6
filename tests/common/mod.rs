//! Helpers shared by the command-line tests: fleets built with the library's generator at a
//! pinned instant, and the real `rekey` binary run against them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use chrono::{DateTime, TimeDelta, Utc};
use rekey::fleet::{self, CaSpec, Generator, IdentitySpec};
use rekey::inspect::Window;
use rekey::keys::KeyAlg;
use rekey::keys::KeyFormat;

pub const AS_OF: &str = "2026-11-28T00:00:00Z";

pub fn as_of() -> DateTime<Utc> {
    AS_OF.parse().expect("AS_OF is RFC 3339")
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

/// A 90-day window issued `ago` days before AS_OF.
pub fn issued(ago: i64) -> Window {
    fleet::window(as_of() - days(ago), 90)
}

pub fn ca_spec(alg: KeyAlg) -> CaSpec {
    CaSpec {
        alg,
        common_name: "fleet test CA".to_string(),
        window: fleet::window(as_of() - days(365), 3650),
        key_format: KeyFormat::Pkcs8,
    }
}

pub fn build(root: &Path, ca: &CaSpec, ids: &[IdentitySpec]) -> Generator {
    fleet::write_fleet(root, ca, ids).expect("the test fleet is written")
}

pub fn rekey() -> Command {
    Command::cargo_bin("rekey").expect("the rekey binary is built")
}

/// Runs a read command with `--root` and the pinned `--as-of`; returns (exit code, stdout, stderr).
pub fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = rekey()
        .args(args)
        .arg("--root")
        .arg(root)
        .args(["--as-of", AS_OF])
        .output()
        .expect("rekey runs");
    (
        out.status
            .code()
            .expect("rekey exits with a code, not a signal"),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

/// `status --format json` as (node/service/kind) → (state, reason).
pub fn states(root: &Path) -> BTreeMap<String, (String, String)> {
    let (_, stdout, stderr) = run(root, &["status", "--format", "json"]);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    doc["credentials"]
        .as_array()
        .expect("credentials is an array")
        .iter()
        .map(|c| {
            let key = format!(
                "{}/{}/{}",
                c["node"].as_str().unwrap(),
                c["service"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            );
            (
                key,
                (
                    c["state"].as_str().unwrap().to_string(),
                    c["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Every secret in a fleet: each token's text and each private key's base64 lines.
pub fn secrets(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.expect("the fleet is readable");
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if name == "token.jwt" {
            let token = text.trim().to_string();
            found.extend(
                token
                    .split('.')
                    .filter(|p| p.len() >= 16)
                    .map(str::to_string),
            );
            found.push(token);
        } else if name.ends_with(".key") || name == "key.pem" {
            found.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(str::to_string),
            );
        }
    }
    found
}
