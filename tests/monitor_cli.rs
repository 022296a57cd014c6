//! The check a monitor runs between upgrades (docs/design.md §5, `status`), through the real
//! binary: `--expires-within` exit codes on a fresh, a nearly expired and a broken fleet, the
//! `--node`/`--service`/`--state` filters, `--as-of` relative to now, the closing summary and
//! colour only on a terminal.

mod common;

use std::path::Path;

use common::*;
use rekey::catalog::every_case;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// `mocctl` (renews nothing) and `kms` (renews its certificate) on two nodes, issued `ago` days
/// before AS_OF.
fn small_fleet(root: &Path, ago: i64) {
    let ids: Vec<_> = ["n1", "n2"]
        .iter()
        .flat_map(|n| ["mocctl", "kms"].map(|s| IdentitySpec::new(n, s, issued(ago))))
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &ids);
}

#[test]
fn a_freshly_rotated_fleet_passes_the_monitor_check() {
    let dir = tempfile::tempdir().unwrap();
    small_fleet(dir.path(), 2);
    // Rotated two days ago: `mocctl` is due at the next upgrade, which is no alarm.
    assert_eq!(run(dir.path(), &["status", "--warn-days", "0"]).0, 3);
    for within in ["30d", "12h", "90m", "87d"] {
        let (code, _, stderr) = run(dir.path(), &["status", "--expires-within", within]);
        assert_eq!(code, 0, "{within}: {stderr}");
    }
    // 88 days left: a window of 88 days or more sees the expiry.
    assert_eq!(run(dir.path(), &["status", "--expires-within", "88d"]).0, 3);
}

#[test]
fn a_nearly_expired_fleet_or_ca_fails_the_monitor_check() {
    let dir = tempfile::tempdir().unwrap();
    small_fleet(dir.path(), 80);
    assert_eq!(run(dir.path(), &["status", "--expires-within", "30d"]).0, 3);
    assert_eq!(run(dir.path(), &["status", "--expires-within", "9d"]).0, 0);
    assert_eq!(run(dir.path(), &["status", "--expires-within", "10d"]).0, 3);

    // Fresh credentials, but the CA expires in 20 days.
    let dir = tempfile::tempdir().unwrap();
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = rekey::fleet::window(as_of() - days(345), 365);
    build(
        dir.path(),
        &ca,
        &[IdentitySpec::new("n1", "kms", issued(2))],
    );
    assert_eq!(run(dir.path(), &["status", "--expires-within", "19d"]).0, 0);
    assert_eq!(run(dir.path(), &["status", "--expires-within", "20d"]).0, 3);
}

#[test]
fn an_expiry_within_the_window_is_answered_first_and_the_summary_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = IdentitySpec::new("n1", "kms", issued(2));
    broken.flaw = Some(rekey::fleet::Flaw::KeyMismatch);
    let ids = [broken, IdentitySpec::new("n2", "kms", issued(80))];
    build(dir.path(), &ca_spec(KeyAlg::P256), &ids);
    // n2/kms expires in 10 days; n1/kms has a problem.
    let (code, stdout, _) = run(dir.path(), &["status", "--expires-within", "14d"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains(
            "expires within 14d 0h: a credential (2026-12-08T00:00:00Z, the first); needs a \
             person: yes (named above); exit 3"
        ),
        "{stdout}"
    );
    let (code, stdout, _) = run(dir.path(), &["status", "--expires-within", "7d"]);
    assert_eq!(
        code, 4,
        "nothing expires within 7 days, and a person is needed: {stdout}"
    );
    assert!(
        stdout.contains("expires within 7d 0h: nothing; needs a person: yes (named above); exit 4"),
        "{stdout}"
    );
    // Without --expires-within, the summary has no such line.
    let (_, stdout, _) = run(dir.path(), &["status"]);
    assert!(!stdout.contains("expires within"), "{stdout}");
}

#[test]
fn a_broken_fleet_with_nothing_expiring_needs_a_person() {
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    // Credentials have already expired: the monitor's question comes first.
    assert_eq!(run(dir.path(), &["status", "--expires-within", "0d"]).0, 3);
    let problems = ["status", "--state", "problem", "--expires-within", "0d"];
    assert_eq!(run(dir.path(), &problems).0, 4);
    // Narrowed to identities with neither problems nor recover, the check is about expiry.
    let filtered = ["status", "--node", "n1", "--expires-within"];
    assert_eq!(
        run(dir.path(), &[&filtered[..], &["1d"]].concat()).0,
        3,
        "n1/caph expired"
    );
    let healthy = [
        "status",
        "--state",
        "healthy",
        "--state",
        "fresh",
        "--expires-within",
        "1d",
    ];
    assert_eq!(run(dir.path(), &healthy).0, 0);
    // --expires-within replaces --warn-days; both at once is a usage error.
    let both = ["status", "--warn-days", "3", "--expires-within", "1d"];
    assert_eq!(run(dir.path(), &both).0, 2);
}

#[test]
fn filters_narrow_status_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    let rows = |args: &[&str]| {
        let (code, stdout, _) = run(root, &[&["status", "--format", "json"], args].concat());
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let rows: Vec<String> = doc["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}/{}/{}={}",
                    c["node"].as_str().unwrap(),
                    c["service"].as_str().unwrap(),
                    c["kind"].as_str().unwrap(),
                    c["state"].as_str().unwrap()
                )
            })
            .collect();
        (code, rows)
    };
    let (code, got) = rows(&["--node", "n1", "--service", "kms"]);
    assert_eq!(got, ["n1/kms/cert=healthy", "n1/kms/token=due"]);
    assert_eq!(code, 3);
    let (code, got) = rows(&["--state", "recover"]);
    assert_eq!(
        got,
        [
            "n2/kms/cert=recover",
            "n2/mocctl/cert=recover",
            "n2/mocctl/token=recover"
        ]
    );
    assert_eq!(code, 4);
    let (_, got) = rows(&["--node", "n1", "--node", "n2", "--state", "stalled"]);
    assert_eq!(got, ["n1/caph/cert=stalled", "n1/csi/cert=stalled"]);

    // The plan keeps whole identities that have a credential in the state asked for.
    let (code, plan, _) = run(root, &["plan", "--state", "healthy"]);
    assert_eq!(code, 3, "n1/kms's token is due");
    let identities: Vec<&str> = plan
        .lines()
        .filter(|l| l.starts_with("service = "))
        .collect();
    assert_eq!(identities.len(), 3, "n1/kms, n2/caph, n2/csi: {plan}");
    assert!(plan.contains("token = { action = \"rotate\""), "{plan}");
    assert!(!plan.contains("[[issue]]"), "issues are problems: {plan}");

    for args in [
        &["status", "--node", "n9"][..],
        &["plan", "--service", "vault"],
    ] {
        let (code, _, stderr) = run(root, args);
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.contains("matches no identity"), "{stderr}");
    }
}

#[test]
fn as_of_relative_to_now_shows_the_fleet_then() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let ids = [IdentitySpec::new(
        "n1",
        "kms",
        rekey::fleet::window(now - days(2), 90),
    )];
    let mut ca = ca_spec(KeyAlg::P256);
    ca.window = rekey::fleet::window(now - days(10), 3650);
    build(dir.path(), &ca, &ids);
    let status = |as_of: &str| {
        let out = rekey()
            .args(["status", "--format", "json", "--as-of", as_of, "--root"])
            .arg(dir.path())
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), doc)
    };
    let (code, doc) = status("+100d");
    assert_eq!(code, 4, "the token has expired by then");
    let then: chrono::DateTime<chrono::Utc> = doc["as_of"].as_str().unwrap().parse().unwrap();
    let off = (then - (now + days(100))).num_seconds().abs();
    assert!(off < 600, "as_of {then} is 100 days from now");
    assert_eq!(doc["credentials"][1]["state"], "recover");
    let (code, doc) = status("-36h");
    assert_eq!(code, 0, "a day and a half ago the pair was fresh");
    assert_eq!(doc["credentials"][0]["state"], "fresh");
}

#[test]
fn the_table_ends_with_a_summary_and_is_coloured_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    let (_, stdout, _) = run(root, &["status"]);
    let tail: Vec<&str> = stdout.lines().rev().take(6).collect();
    let tail = tail.join("\n");
    for wanted in [
        "22 identities, 40 credentials: 3 healthy, 2 fresh, 8 due, 2 stalled, 1 expired, 3 recover, 21 with a problem",
        "already expired: 4 credentials",
        "nearest expiry: n1/csi certificate, 2026-12-08T00:00:00Z (10d 0h left)",
        "next: fix the",
        "rekey recover --root",
        "rekey plan --root",
    ] {
        assert!(tail.contains(wanted), "{wanted:?} missing from:\n{tail}");
    }
    assert!(!stdout.contains('\u{1b}'), "never colour a pipe");

    let bin = assert_cmd::cargo::cargo_bin("rekey");
    let on_terminal = |no_color: Option<&str>| {
        let command = format!(
            "'{}' status --root '{}' --as-of {AS_OF} --node n3",
            bin.display(),
            root.display()
        );
        let mut script = std::process::Command::new("script");
        script
            .args(["-qec", &command, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            script.env("NO_COLOR", v);
        }
        let out = script.output().expect("script(1) from util-linux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        on_terminal(None).contains("\u{1b}[35mproblem\u{1b}[0m"),
        "{}",
        on_terminal(None)
    );
    assert!(
        !on_terminal(Some("1")).contains('\u{1b}'),
        "NO_COLOR is honoured"
    );
}
