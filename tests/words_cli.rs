//! What rekey says is true and said one way (docs/design.md §5, "Counts"): every count agrees
//! with its noun in every output of a full cycle; `problems` means identities with a problem in
//! the table, both JSON documents, metrics and HTML, and fleet issues have their own name; a
//! report counts after its run; a policy table changes only the fields it names, and `rekey
//! policy` says where each value comes from; the audit log always names someone; a plan's bad
//! value is named at its own line.

mod common;

use std::path::Path;

use common::{AS_OF, build, ca_spec, issued, rekey, run};
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// Runs `rekey ARGS` (no `--root` added) in `dir` with `env`; returns (code, stdout + stderr).
fn say(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = rekey()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("rekey runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("an exit code"), text)
}

/// Every number of `text` followed by a word that disagrees with it: `1 runs`, `2 identity`
/// (`\b1 [a-z]+s\b` and `\b(0|[2-9]|[1-9][0-9]+) NOUN\b`).
fn disagreements(text: &str) -> Vec<String> {
    // Singular words that end in s; and the nouns rekey counts.
    const SINGULAR_ENDING_IN_S: [&str; 2] = ["process", "status"];
    const NOUNS: [&str; 12] = [
        "identity",
        "credential",
        "run",
        "problem",
        "hook",
        "file",
        "path",
        "entry",
        "issue",
        "day",
        "hour",
        "other",
    ];
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // A number after `-`, `:` or `.` is part of a date, a time or a decimal.
        let starts_word =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || b"-:.".contains(&bytes[at - 1]));
        if !(starts_word && bytes[at].is_ascii_digit()) {
            at += 1;
            continue;
        }
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let number = &text[at..at + digits];
        at += digits;
        let Some(after) = text[at..].strip_prefix(' ') else {
            continue;
        };
        let word: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        let ends_word = after[word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        if word.is_empty() || !ends_word {
            continue;
        }
        let one = number == "1";
        // `01` and the like are parts of names and dates, not counts.
        let many = !one && (number == "0" || !number.starts_with('0'));
        let plural_after_one =
            one && word.ends_with('s') && !SINGULAR_ENDING_IN_S.contains(&word.as_str());
        let singular_after_many = many && NOUNS.contains(&word.as_str());
        if plural_after_one || singular_after_many {
            found.push(format!("{number} {word}"));
        }
    }
    found
}

#[test]
fn the_disagreement_finder_finds_them() {
    let cases: [(&str, &[&str]); 8] = [
        ("1 identities, 2 credentials", &["1 identities"]),
        ("the newest 1 runs keep theirs", &["1 runs"]),
        ("fix the 1 problems named above", &["1 problems"]),
        (
            "0 identity, 2 run, 11 hook",
            &["0 identity", "2 run", "11 hook"],
        ),
        ("1 identity, 2 credentials, 0 files", &[]),
        ("node-01 kms, 2026-10-27 due, sha256 1 process", &[]),
        (
            "x1 runs, 2026-12-30 problem, 12:01 runs, 1/1 identities",
            &["1 identities"],
        ),
        ("(1 others)", &["1 others"]),
    ];
    for (text, want) in cases {
        assert_eq!(disagreements(text), want, "{text}");
    }
}

fn run_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

fn report_of(root: &Path, id: &str) -> serde_json::Value {
    let path = root.join(".rekey/runs").join(id).join("report.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_full_cycle_says_every_count_with_a_noun_that_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (code, demo) = say(dir, &["demo", "--dir", "demo", "--as-of", "-50d"], &[]);
    assert_eq!(code, 0, "{demo}");
    let mut said = vec![("demo".to_string(), demo)];
    let mut step = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--root", "demo"]);
        let (_, text) = say(dir, &all, &[]);
        said.push((args.join(" "), text));
    };
    for format in ["table", "json", "prometheus", "html"] {
        step(&["status", "--format", format]);
    }
    step(&["status", "--expires-within", "30d"]);
    for format in ["toml", "json", "html"] {
        step(&["plan", "--format", format]);
    }
    step(&["plan", "-o", "plan.toml"]);
    step(&["policy"]);
    step(&["policy", "--format", "json"]);
    step(&["rotate", "--dry-run"]);
    step(&["rotate", "--dry-run", "--format", "json"]);
    step(&["apply", "plan.toml", "--progress", "always"]);
    step(&[
        "rotate",
        "--node",
        "node-01",
        "--force",
        "--progress",
        "always",
    ]);
    step(&["rotate", "--format", "json"]);
    step(&["recover", "--all", "--reason", "checked"]);
    step(&[
        "recover", "--all", "--reason", "checked", "--format", "json",
    ]);
    step(&["recover", "--all", "--reason", "checked", "--yes"]);
    step(&["runs"]);
    step(&["runs", "--format", "json"]);
    let first = run_ids(&dir.join("demo"))[0].clone();
    step(&["rollback", &first, "--dry-run"]);
    step(&["rollback", &first]);
    step(&["rollback", &first]);
    step(&["runs"]);
    step(&["prune", "--keep", "1", "--dry-run"]);
    step(&["prune", "--keep", "2", "--dry-run"]);
    step(&["prune", "--keep", "1"]);
    step(&["hooks", "list"]);
    step(&["hooks", "retry"]);
    // Hooks left pending: one identity's, then six more.
    step(&[
        "rotate",
        "--force",
        "--node",
        "node-01",
        "--service",
        "kms",
        "--deploy-hook",
        "false",
    ]);
    step(&["hooks", "retry"]);
    step(&["hooks", "retry", "--deploy-hook", "false"]);
    step(&[
        "rotate",
        "--force",
        "--node",
        "node-02",
        "--deploy-hook",
        "false",
    ]);
    step(&["hooks", "list"]);
    step(&["hooks", "retry", "--deploy-hook", "false"]);
    step(&["hooks", "retry", "--deploy-hook", "true"]);
    step(&["runs"]);
    step(&["status"]);
    // The cycle did what it says (a command that only failed would say little).
    let all: String = said.iter().map(|(_, text)| text.as_str()).collect();
    for phrase in [
        "Built a demo fleet of 20 identities",
        "add --yes to recover these 2 identities",
        "files put back)",
        "1 pending hook ran, 1 failed and stays pending",
        "7 pending hooks ran, 7 failed and stay pending",
        "would remove the backups of",
        "next: fix the problems named above (2 identities with a problem)",
    ] {
        assert!(all.contains(phrase), "{phrase:?} was not said:\n{all}");
    }
    let mut wrong = Vec::new();
    for (command, text) in &said {
        for d in disagreements(text) {
            wrong.push(format!("rekey {command}: {d:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "counts that disagree with their noun:\n{}",
        wrong.join("\n")
    );
}

/// A fleet with one identity to recover, one with a problem, a fleet issue (a service
/// directory that is a link) and one identity due.
fn mixed(root: &Path) {
    let specs = [
        IdentitySpec::new("n1", "mocctl", issued(80)),
        IdentitySpec::new("n2", "mocctl", issued(95)),
        IdentitySpec::new("n3", "mocctl", issued(10)),
    ];
    build(root, &ca_spec(KeyAlg::Ed25519), &specs);
    std::fs::write(root.join("nodes/n3/mocctl/key.pem"), "not a key").unwrap();
    std::os::unix::fs::symlink(root.join("nodes/n1/mocctl"), root.join("nodes/n3/linked")).unwrap();
}

#[test]
fn problems_count_identities_and_fleet_issues_have_their_own_name_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mixed(root);
    let (_, json, _) = run(root, &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    let totals = &status["totals"];
    assert_eq!(totals["identities_by_state"]["problem"], 1, "{totals:#}");
    assert_eq!(
        totals["problems"], 1,
        "problems counts identities: {totals:#}"
    );
    let issues = status["issues"].as_array().unwrap();
    let fleet_issues = issues.iter().filter(|i| i["problem"] == true).count();
    assert!(fleet_issues > 0, "{issues:?}");
    assert_eq!(totals["fleet_issues"], fleet_issues, "{totals:#}");

    let (_, table, _) = run(root, &["status"]);
    assert!(
        table.contains(&format!(
            "next: fix the problems named above (1 identity with a problem and {})",
            if fleet_issues == 1 {
                "1 fleet issue".to_string()
            } else {
                format!("{fleet_issues} fleet issues")
            }
        )),
        "{table}"
    );

    let (_, prom, _) = run(root, &["status", "--format", "prometheus"]);
    assert!(
        prom.contains("rekey_identities{state=\"problem\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains(&format!("rekey_fleet_issues {fleet_issues}")),
        "{prom}"
    );

    let out = tmp.path().join("status.html");
    let (_, _, _) = run(
        root,
        &["status", "--format", "html", "-o", out.to_str().unwrap()],
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("<span id=\"attention-count\">2</span> identities")
            && html.contains(&format!(
                "<span id=\"issue-count\">{fleet_issues}</span> fleet issue"
            )),
        "{}",
        html.lines()
            .find(|l| l.contains("attention-count"))
            .unwrap_or_default()
    );

    let (code, json, stderr) = run(root, &["rotate", "--format", "json"]);
    assert_eq!(code, 4, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    common::assert_report_valid(&report, "rotate");
    let counts = &report["counts"];
    assert_eq!(counts["problems"], 1, "{counts:#}");
    assert_eq!(counts["needs_recover"], 1, "{counts:#}");
    assert_eq!(counts["fleet_issues"], fleet_issues, "{counts:#}");
}

#[test]
fn recover_counts_what_is_left_after_it_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let specs = [
        IdentitySpec::new("n1", "mocctl", issued(10)),
        IdentitySpec::new("n2", "mocctl", issued(95)),
    ];
    build(root, &ca_spec(KeyAlg::Ed25519), &specs);
    let (code, json, stderr) = run(
        root,
        &[
            "recover", "--all", "--reason", "checked", "--yes", "--format", "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["counts"]["done"], 1, "{report:#}");
    assert_eq!(report["counts"]["needs_recover"], 0, "{report:#}");
    assert!(report.get("needs_attention").is_none(), "{report:#}");
    common::assert_report_valid(&report, "recover");
}

#[test]
fn a_rollback_counts_the_files_it_put_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let specs = [
        IdentitySpec::new("n1", "mocctl", issued(80)),
        IdentitySpec::new("n2", "mocctl", issued(80)),
    ];
    build(root, &ca_spec(KeyAlg::Ed25519), &specs);
    let (code, _, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let rotated = run_ids(root)[0].clone();
    let changed: usize = report_of(root, &rotated)["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["files"].as_array().unwrap().len())
        .sum();
    assert_eq!(changed, 6, "cert, key and token of two identities");
    let out = rekey()
        .args(["rollback", &rotated, "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("2 done (6 files put back)"), "{stdout}");
    let back = run_ids(root)[1].clone();
    assert_eq!(report_of(root, &back)["counts"]["credentials"], 6);
}

#[test]
fn a_builtin_service_table_keeps_what_it_does_not_name_and_policy_says_where_each_value_is_from() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    build(
        root,
        &ca_spec(KeyAlg::Ed25519),
        &[IdentitySpec::new("n1", "kms", issued(30))],
    );
    // The README's example: a pattern of its own for kms, nothing else said of it.
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nkeep_runs = 3\n[services.kms]\nsubject_cn = \"{node}/{service}\"\n",
    )
    .unwrap();
    let (_, json, _) = run(root, &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cert = &status["credentials"][0];
    assert_eq!(cert["kind"], "cert");
    assert_eq!(
        cert["self_rotates"], true,
        "kms still renews its certificate: {cert:#}"
    );

    let policy = |format: &str| {
        let out = rekey()
            .args([
                "policy",
                "--format",
                format,
                "--root",
                root.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let toml = policy("table");
    for line in [
        "keep_runs = 3  # from rekey.toml",
        "validity_days = 90  # built-in",
        "subject_cn = \"{node}/{service}\"  # from rekey.toml",
        "self_renews_cert = true  # built-in",
    ] {
        assert!(toml.contains(line), "{line}:\n{toml}");
    }
    let doc: serde_json::Value = serde_json::from_str(&policy("json")).unwrap();
    assert_eq!(doc["source"], "file");
    let field = |service: Option<&str>, name: &str| {
        doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["service"].as_str() == service && f["field"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{service:?} {name}: {doc:#}"))
    };
    assert_eq!(field(None, "keep_runs")["source"], "file");
    assert_eq!(field(None, "keep_runs")["value"], 3);
    assert_eq!(field(None, "validity_days")["source"], "builtin");
    assert_eq!(field(Some("kms"), "subject_cn")["source"], "file");
    let renews = field(Some("kms"), "self_renews_cert");
    assert_eq!(
        (&renews["value"], &renews["source"]),
        (&true.into(), &"builtin".into())
    );
    assert_eq!(field(Some("csi"), "self_renews_cert")["source"], "builtin");
}

#[test]
fn the_audit_log_names_someone() {
    let uid = rustix::process::getuid().as_raw();
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        String,
    );
    let cases: [Case; 4] = [
        (
            "SUDO_USER first",
            &[("SUDO_USER", "bob"), ("USER", "root")],
            "bob".into(),
        ),
        (
            "an empty SUDO_USER is skipped",
            &[("SUDO_USER", ""), ("USER", "carol")],
            "carol".into(),
        ),
        (
            "USER empty too: the uid",
            &[("SUDO_USER", ""), ("USER", "")],
            format!("uid {uid}"),
        ),
        ("neither set: the uid", &[], format!("uid {uid}")),
    ];
    for (name, env, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        build(
            root,
            &ca_spec(KeyAlg::Ed25519),
            &[IdentitySpec::new("n1", "mocctl", issued(95))],
        );
        let out = rekey()
            .args([
                "recover", "--all", "--reason", "checked", "--yes", "--as-of", AS_OF,
            ])
            .arg("--root")
            .arg(root)
            .env_remove("SUDO_USER")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        let audit = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap();
        for line in audit.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(line["operator"], want.as_str(), "{name}: {line}");
        }
    }
}

#[test]
fn a_run_under_a_minute_says_its_duration_to_a_tenth_of_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let specs = [IdentitySpec::new("n1", "mocctl", issued(80))];
    build(root, &ca_spec(KeyAlg::Ed25519), &specs);
    let (code, _, stderr) = run(root, &["rotate", "--progress", "always"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("done in"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let took = line.rsplit("done in ").next().unwrap();
    let tenths = took.strip_suffix('s').and_then(|t| t.split_once('.'));
    assert!(
        tenths.is_some_and(|(s, d)| s.parse::<u32>().is_ok() && d.len() == 1),
        "{line}"
    );
}

#[test]
fn an_edited_plan_names_its_values_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    build(
        root,
        &ca_spec(KeyAlg::Ed25519),
        &[IdentitySpec::new("n1", "mocctl", issued(80))],
    );
    let plan = root.join("plan.toml");
    let (_, _, _) = run(root, &["plan", "-o", plan.to_str().unwrap()]);
    let text = std::fs::read_to_string(&plan).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("cert = {"))
        .unwrap()
        + 1;
    std::fs::write(&plan, text.replacen(", sha256 = \"", ", sha256 = \"zz", 1)).unwrap();
    let (code, _, stderr) = run(root, &["apply", plan.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("line {at}: n1/mocctl cert.sha256 \"zz")),
        "the line of the bad value ({at}): {stderr}"
    );
}
