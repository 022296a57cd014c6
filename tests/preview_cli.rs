//! What rekey says before and after it acts is what it does (issue: every preview is the run
//! without its writes, every reason true): `rollback --dry-run` is the rollback, a forced run can
//! be previewed and `apply` has `--dry-run`, every identity a hand-edited plan names has a true
//! reason, `rotate` and `apply` share the exit rule, and a second rollback writes nothing.

mod common;

use std::path::Path;

use common::{AS_OF, build, ca_spec, copy, run_ids};
use rekey::keys::KeyAlg;
use serde_json::Value;

use common::run_unpinned as rekey;

fn at(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--as-of", AS_OF]);
    rekey(root, &all)
}

/// The report line of `node/service`.
fn line<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            format!(
                "{}/{}",
                i["node"].as_str().unwrap(),
                i["service"].as_str().unwrap()
            ) == id
        })
        .unwrap_or_else(|| panic!("{id} is in the report: {report:#}"))
}

/// Issue item 1: `rollback --dry-run` says what the rollback does, in JSON when asked: a file
/// changed since the run skips its identity whole; a pruned run fails, exit 3.
#[test]
fn rollback_dry_run_is_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 2, 30);
    assert_eq!(at(&root, &["rotate"]).0, 0);
    assert_eq!(at(&root, &["rotate", "--force"]).0, 0);
    let [first, second] = [run_ids(&root)[0].clone(), run_ids(&root)[1].clone()];
    let cert = root.join("nodes/node-01/svc-0001/cert.pem");
    let mut text = std::fs::read_to_string(&cert).unwrap();
    text.push('\n');
    std::fs::write(&cert, text).unwrap();
    let dry = ["rollback", &second, "--dry-run", "--format", "json"];
    let (code, out, err) = rekey(&root, &dry);
    assert_eq!(code, 3, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["dry_run"], true);
    let changed = line(&report, "node-01/svc-0001");
    assert_eq!(changed["outcome"], "skipped", "{changed}");
    let why = changed["reason"].as_str().unwrap();
    assert!(why.contains("cert.pem changed since run"), "{why}");
    assert_eq!(line(&report, "node-00/svc-0000")["outcome"], "done");
    // The rollback does just that: node-00 holds what the first run wrote again.
    assert_eq!(rekey(&root, &["rollback", &second]).0, 3);
    // node-00's newest change is that rollback: the first run's backup goes.
    let (code, _, err) = rekey(&root, &["prune", "--keep", "1"]);
    assert_eq!(code, 0, "{err}");
    let dry = ["rollback", &first, "--dry-run", "--format", "json"];
    let (code, out, err) = rekey(&root, &dry);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 3, "a pruned run cannot be put back: {err}");
    let pruned = line(&report, "node-00/svc-0000");
    assert_eq!(pruned["outcome"], "failed", "{pruned}");
    let why = pruned["reason"].as_str().unwrap();
    assert!(why.contains("is missing"), "{why}");
    assert_eq!(
        run_ids(&root).len(),
        3,
        "no run directory made by a dry run"
    );
    let (real, _, _) = rekey(&root, &["rollback", &first]);
    assert_eq!(real, code, "the rollback exits as its dry run said");
}

/// Issue item 2: a forced run can be previewed, its plan summary counts the forced rotations,
/// and `apply` takes `--dry-run`.
#[test]
fn a_forced_run_can_be_previewed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 2, 0);
    let (code, out, err) = at(
        &root,
        &["rotate", "--force", "--dry-run", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["counts"]["done"], 2, "{report:#}");
    assert_eq!(report["counts"]["credentials"], 4, "{report:#}");
    assert!(err.contains("4 rotate (4 forced), 0 keep"), "{err}");
    let plan = dir.path().join("plan.toml");
    let (code, _, err) = at(&root, &["plan", "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("action = \"keep\"", "action = \"rotate\"");
    std::fs::write(&plan, text).unwrap();
    let plan = plan.to_str().unwrap();
    let (code, out, err) = at(
        &root,
        &["apply", plan, "--force", "--dry-run", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (report["dry_run"].clone(), report["counts"]["done"].clone()),
        (true.into(), 2.into())
    );
    assert!(run_ids(&root).is_empty(), "nothing written");
}

/// Issue item 3: every identity a hand-edited plan names is in the report, with a reason that
/// is true, per credential.
#[test]
fn every_identity_a_plan_names_has_a_true_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let mut kms = rekey::fleet::IdentitySpec::new("n1", "svc-c", common::issued(30));
    kms.token = Some(common::issued(0));
    let ids = [
        rekey::fleet::IdentitySpec::new("n1", "svc-a", common::issued(30)),
        rekey::fleet::IdentitySpec::new("n1", "svc-b", common::issued(30)),
        kms,
    ];
    build(&root, &ca_spec(KeyAlg::P256), &ids);
    let plan = dir.path().join("plan.toml");
    let (code, _, err) = at(&root, &["plan", "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    let text = std::fs::read_to_string(&plan).unwrap();
    // svc-a loses its token line, svc-b its cert line; svc-c's fresh token is flipped to rotate
    // (their certificates are due).
    let mut service = String::new();
    let mut edited = Vec::new();
    for l in text.lines() {
        if let Some(s) = l.strip_prefix("service = ") {
            service = s.trim_matches('"').to_string();
        }
        match (service.as_str(), l.split(' ').next().unwrap_or("")) {
            ("svc-a", "token") | ("svc-b", "cert") => continue,
            ("svc-c", "token") => edited.push(l.replace("\"keep\"", "\"rotate\"")),
            _ => edited.push(l.to_string()),
        }
    }
    std::fs::write(&plan, edited.join("\n") + "\n").unwrap();
    let (code, out, err) = at(
        &root,
        &["apply", plan.to_str().unwrap(), "--format", "json"],
    );
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(code, 0, "{report:#}");
    let reason = |id: &str| {
        line(&report, id)["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let a = line(&report, "n1/svc-a");
    assert_eq!(a["outcome"], "done");
    assert!(a["cert"].is_object() && a["token"].is_null(), "{a}");
    assert_eq!(
        reason("n1/svc-a"),
        "the plan lists no line for token.jwt: not rotated"
    );
    let b = line(&report, "n1/svc-b");
    assert!(b["token"].is_object() && b["cert"].is_null(), "{b}");
    assert_eq!(
        reason("n1/svc-b"),
        "the plan lists no line for cert.pem: not rotated"
    );
    assert!(
        reason("n1/svc-c")
            .starts_with("token.jwt: the plan asks rotate; the fleet judges keep (fresh"),
        "{report:#}"
    );
}

/// Issue item 5: `rotate` and `plan` + `apply` on the same fleet exit alike: 4 when the run
/// went well but leaves identities for a person.
#[test]
fn rotate_and_apply_share_the_exit_rule() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let ids = [
        rekey::fleet::IdentitySpec::new("n1", "mocctl", common::issued(30)),
        rekey::fleet::IdentitySpec::new("n2", "kva", common::issued(95)),
    ];
    build(&base, &ca_spec(KeyAlg::P256), &ids);
    let root = dir.path().join("fleet");
    copy(&base, &root);
    assert_eq!(at(&root, &["rotate"]).0, 4);
    copy(&base, &root);
    let plan = dir.path().join("plan.toml");
    assert_eq!(at(&root, &["plan", "-o", plan.to_str().unwrap()]).0, 4);
    let (code, out, err) = at(&root, &["apply", plan.to_str().unwrap()]);
    assert_eq!(code, 4, "{out}{err}");
}

/// Issue item 8: a second rollback of the same run says so and writes nothing: no run directory,
/// and `rekey runs` lists it rolled back once.
#[test]
fn a_second_rollback_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 2, 30);
    assert_eq!(at(&root, &["rotate"]).0, 0);
    let id = run_ids(&root)[0].clone();
    assert_eq!(rekey(&root, &["rollback", &id]).0, 0);
    let runs = run_ids(&root);
    let (code, _, err) = rekey(&root, &["rollback", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already rolled back"), "{err}");
    assert_eq!(run_ids(&root), runs, "no new run directory");
}

/// A dry run meets what its run would meet first: another writer's lock (it refuses alike, and
/// still writes nothing) and pending hooks the run would retry (it says so: how they end counts
/// in the run's exit code).
#[test]
fn a_dry_run_refuses_a_held_lock_and_names_the_hooks_its_run_would_retry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 2, 80);
    let (code, _, err) = at(&root, &["rotate", "--deploy-hook", "false"]);
    assert_eq!(code, 3, "{err}");
    let runs = run_ids(&root);
    let (code, _, err) = at(
        &root,
        &["rotate", "--dry-run", "--force", "--deploy-hook", "false"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the run would first retry 2 pending hook calls (rekey hooks list)"),
        "{err}"
    );
    // Another writer holds the lock: the run would refuse, and so does its dry run.
    let lock = std::fs::File::open(root.join(".rekey/lock")).unwrap();
    lock.lock().unwrap();
    let (real, _, real_err) = at(&root, &["rotate", "--force"]);
    let (dry, _, dry_err) = at(&root, &["rotate", "--force", "--dry-run"]);
    assert_eq!((real, dry), (1, 1), "{real_err}{dry_err}");
    assert!(
        dry_err.contains("another rekey is writing to this fleet"),
        "{dry_err}"
    );
    drop(lock);
    assert_eq!(run_ids(&root), runs, "nothing written");
    // A dry run's look at the lock (held shared for an instant; here for a tenth of a second)
    // never makes a run fail: the writer tries again.
    let lock = std::fs::File::open(root.join(".rekey/lock")).unwrap();
    lock.lock_shared().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(lock);
    });
    let (code, _, err) = at(&root, &["rotate", "--force", "--no-hooks"]);
    release.join().unwrap();
    assert_eq!(code, 0, "a dry run looking at the lock stops no run: {err}");
}

/// Issue item 4: a rollback puts files back without judging the fleet, so its report states no
/// count of what is left for a person (`null`, not a 0 it never counted), and its dry run says
/// the same; a rotating run's report counts them.
#[test]
fn a_rollback_states_no_count_it_did_not_judge() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    common::fleet(&root, 3, 30);
    std::fs::write(
        root.join("nodes/node-02/svc-0002/cert.pem"),
        "not a certificate\n",
    )
    .unwrap();
    let (code, out, err) = at(&root, &["rotate", "--format", "json"]);
    assert_eq!(code, 4, "a problem is left for a person: {err}");
    let rotated: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    common::assert_report_valid(&rotated, "rotate");
    assert_eq!(rotated["counts"]["problems"], 1, "{:#}", rotated["counts"]);
    assert_eq!(rotated["counts"]["needs_recover"], 0);
    let run = run_ids(&root)[0].clone();
    for dry in [true, false] {
        let mut args = vec!["rollback", run.as_str(), "--format", "json"];
        if dry {
            args.push("--dry-run");
        }
        let (code, out, err) = rekey(&root, &args);
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        common::assert_report_valid(&report, "rollback");
        let counts = &report["counts"];
        assert_eq!(counts["done"], 2, "dry run {dry}: {counts:#}");
        for unjudged in ["needs_recover", "problems", "fleet_issues"] {
            assert!(
                counts[unjudged].is_null(),
                "dry run {dry}: {unjudged} in {counts:#}"
            );
        }
    }
}
