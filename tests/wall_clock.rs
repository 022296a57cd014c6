//! Where rekey reads the wall clock itself, at clocks far from the dates the other tests pin:
//! `rekey demo` (a fleet dated from now, judged and rotated at now), the names and timestamps of
//! writing runs (run ids, reports, the audit log, whatever `--as-of` says) and validity from now
//! when no `--as-of` is given. The real binary runs under libfaketime (`faketime`, installed by
//! .ci/run); where it is absent each test says it is skipped.
//!
//! The guard that refuses a writing run whose `--as-of` is more than 5 minutes ahead of the clock
//! reads the clock too: it is tested here at a clock a year behind the pinned date.

mod common;

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use rekey::fleet::{IdentitySpec, window};
use rekey::keys::KeyAlg;
use x509_parser::prelude::{FromDer, X509Certificate};

/// (what, the wall clock)
const CLOCKS: [(&str, &str); 4] = [
    ("three years ahead", "2029-11-28T12:00:00Z"),
    ("a year before the pinned date", "2025-11-28T12:00:00Z"),
    ("a leap day", "2028-02-29T12:00:00Z"),
    (
        "past 2049 (dates encode as GeneralizedTime)",
        "2051-06-15T12:00:00Z",
    ),
];

/// `status` after the demo, at whatever clock it ran: credentials per state.
const AFTER_DEMO: [(&str, usize); 4] = [
    ("fresh", 21),
    ("healthy", 11),
    ("problem", 4),
    ("recover", 2),
];

fn clock(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 clock")
}

/// A run id's start (`20291128T1200`): the minute a run began.
fn id_minute(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M").to_string()
}

/// A timestamp's minute (`2029-11-28T12:00`).
fn stamp_minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

fn not_before(cert: &Path) -> DateTime<Utc> {
    let der = rekey::pemblock::single(&std::fs::read(cert).unwrap())
        .unwrap()
        .der;
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    DateTime::from_timestamp(c.validity().not_before.timestamp(), 0).unwrap()
}

#[test]
fn the_demo_works_at_any_wall_clock() {
    if !faketime_installed() {
        return;
    }
    let mut judged = Vec::new();
    for (what, at) in CLOCKS {
        let at = clock(at);
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("demo");
        let (code, stdout, stderr) = output(rekey_at(at).arg("demo").arg("--dir").arg(&demo));
        assert_eq!(code, 0, "{what}: {stdout}{stderr}");
        let said = stdout + &stderr;
        assert!(
            said.contains(
                "plan: 20 identities, 38 credentials: 19 rotate, 13 keep, 2 recover, 4 skip"
            ),
            "{what}: the demo fleet is judged as at any other time:\n{said}"
        );
        let reports = reports(&demo);
        assert_eq!(reports.len(), 1, "{what}");
        let id = reports[0]["run_id"].as_str().unwrap();
        assert!(id.starts_with(&id_minute(at)), "{what}: run {id}");
        assert!(
            said.contains(&format!(
                "run {id} (rotate): 15 done (19 credentials), 0 skipped, 0 failed"
            )),
            "{what}:\n{said}"
        );

        // Judged again at the same clock (no --as-of): what it rotated is fresh from then.
        let (_, stdout, stderr) = output(
            rekey_at(at)
                .args(["status", "--format", "json", "--root"])
                .arg(&demo),
        );
        let states = states_in(&stdout, &stderr);
        let issued_now = format!("fresh: issued {}", stamp_minute(at));
        let rotated = states
            .values()
            .filter(|(_, why)| why.starts_with(&issued_now))
            .count();
        assert_eq!(rotated, 19, "{what}: {states:?}");
        for (state, count) in AFTER_DEMO {
            let got = states.values().filter(|(s, _)| s == state).count();
            assert_eq!(got, count, "{what}: {state}: {states:?}");
        }
        let states: Vec<(String, String)> = states.into_iter().map(|(k, (s, _))| (k, s)).collect();
        judged.push((what, states));
    }
    for (what, states) in &judged[1..] {
        assert_eq!(states, &judged[0].1, "{what}: not as {}", judged[0].0);
    }
}

/// (what, the wall clock, `--as-of`)
const WRITES: [(&str, &str, Option<&str>); 3] = [
    (
        "three years ahead, --as-of the pinned date",
        "2029-11-28T12:00:00Z",
        Some(AS_OF),
    ),
    (
        "three years ahead, no --as-of",
        "2029-11-28T12:00:00Z",
        None,
    ),
    (
        "a year before the pinned date, no --as-of",
        "2025-11-28T12:00:00Z",
        None,
    ),
];

/// rotate, recover, rollback and runs, minutes apart at a shifted clock: each run is named and
/// stamped by that clock, and new validity starts at `--as-of`, or at the clock without it.
#[test]
fn writing_runs_are_named_and_stamped_by_the_wall_clock() {
    if !faketime_installed() {
        return;
    }
    for (what, at, as_of_arg) in WRITES {
        let at = clock(at);
        let judged = as_of_arg.map_or(at, clock);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut ca = ca_spec(KeyAlg::P256);
        ca.window = window(judged - days(365), 3650);
        let issued = |ago: i64| window(judged - days(ago), 90);
        build(
            root,
            &ca,
            &[
                IdentitySpec::new("n1", "mocctl", issued(30)),
                IdentitySpec::new("n2", "kms", issued(95)),
            ],
        );
        // Each command ten minutes after the one before, as an operator would run them.
        let step = |n: i32| at + TimeDelta::minutes(10 * i64::from(n));
        let writer = |n: i32, args: &[&str]| {
            let mut cmd = rekey_at(step(n));
            cmd.args(args).arg("--root").arg(root);
            if let Some(as_of) = as_of_arg {
                cmd.args(["--as-of", as_of]);
            }
            output(&mut cmd)
        };

        let (code, stdout, stderr) = writer(0, &["rotate"]);
        assert_eq!(code, 4, "{what}: n2/kms needs recover: {stdout}{stderr}");
        let issued_at = not_before(&root.join("nodes/n1/mocctl/cert.pem"));
        if as_of_arg.is_some() {
            assert_eq!(issued_at, judged, "{what}: validity starts at --as-of");
        } else {
            assert!(
                issued_at >= at && issued_at < at + TimeDelta::minutes(1),
                "{what}: validity starts at the clock, not {issued_at}"
            );
        }
        let (code, _, stderr) = writer(1, &["recover", "--all", "--reason", "clock", "--yes"]);
        assert_eq!(code, 0, "{what}: {stderr}");
        let audit = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap();
        for line in audit.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                line["time"]
                    .as_str()
                    .unwrap()
                    .starts_with(&stamp_minute(step(1))),
                "{what}: audited at the clock: {line}"
            );
        }
        let rotate_id = reports(root)[0]["run_id"].as_str().unwrap().to_string();
        let (code, _, stderr) = output(
            rekey_at(step(2))
                .args(["rollback", &rotate_id, "--root"])
                .arg(root),
        );
        assert_eq!(code, 0, "{what}: {stderr}");

        let reports = reports(root);
        let commands: Vec<&str> = reports
            .iter()
            .map(|r| r["command"].as_str().unwrap())
            .collect();
        assert_eq!(
            commands,
            ["rotate", "recover", "rollback"],
            "{what}: ids sort in start order"
        );
        for (n, report) in (0..).zip(&reports) {
            let (id, started) = (
                report["run_id"].as_str().unwrap(),
                report["started"].as_str().unwrap(),
            );
            assert!(id.starts_with(&id_minute(step(n))), "{what}: run {id}");
            assert!(
                started.starts_with(&stamp_minute(step(n))),
                "{what}: {id} started {started}"
            );
            if n < 2 {
                let as_of = report["as_of"].as_str().unwrap();
                match as_of_arg {
                    Some(given) => assert_eq!(as_of, given, "{what}: {id}"),
                    None => assert!(
                        as_of.starts_with(&stamp_minute(step(n))),
                        "{what}: {id}: {as_of}"
                    ),
                }
            }
        }
        let (code, listing, stderr) = output(rekey_at(step(3)).args(["runs", "--root"]).arg(root));
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(
            listing.contains(&format!(
                "rolled back by {}",
                reports[2]["run_id"].as_str().unwrap()
            )),
            "{what}:\n{listing}"
        );
    }
}

/// A clock behind the pinned date: a writing run dated ahead of it is refused (what it wrote
/// would not be valid yet), with nothing written; 4 minutes ahead is within the allowed skew;
/// reading commands judge any date.
#[test]
fn a_writing_run_dated_ahead_of_the_clock_is_refused_at_any_clock() {
    if !faketime_installed() {
        return;
    }
    let at = clock("2025-11-28T12:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = window(at - days(365), 3650);
    build(
        &root,
        &ca,
        &[IdentitySpec::new("n1", "mocctl", window(at - days(30), 90))],
    );
    let plan = dir.path().join("plan.toml");
    let (code, _, _) = output(
        rekey_at(at)
            .args(["plan", "--as-of", AS_OF, "-o"])
            .arg(&plan)
            .arg("--root")
            .arg(&root),
    );
    assert_eq!(
        code, 4,
        "a plan may look at any date (the fleet is not valid yet then)"
    );
    let before = snapshot(&root);
    let r = root.to_str().unwrap().to_string();
    let ahead = |minutes: i64| (at + TimeDelta::minutes(minutes)).to_rfc3339();
    let p = plan.to_str().unwrap().to_string();
    let refused: [Vec<String>; 4] = [
        vec!["rotate".into(), "--as-of".into(), AS_OF.into()],
        vec!["apply".into(), p.clone(), "--as-of".into(), AS_OF.into()],
        vec![
            "recover".into(),
            "--all".into(),
            "--reason".into(),
            "x".into(),
            "--yes".into(),
            "--as-of".into(),
            AS_OF.into(),
        ],
        vec!["rotate".into(), "--as-of".into(), ahead(6)],
    ];
    for args in refused {
        let mut cmd = rekey_at(at);
        cmd.args(&args);
        if args[0] != "apply" {
            cmd.args(["--root", &r]);
        }
        let (code, _, stderr) = output(&mut cmd);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("is ahead of the system clock"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(snapshot(&root), before, "nothing written");
    assert!(!root.join(".rekey/runs").exists(), "no run started");
    let (code, _, stderr) =
        output(rekey_at(at).args(["rotate", "--as-of", &ahead(4), "--root", &r]));
    assert_eq!(code, 0, "within the skew: {stderr}");
    assert_eq!(
        output(rekey_at(at).args(["status", "--as-of", AS_OF, "--root", &r])).0,
        4,
        "status judges any date"
    );
}
