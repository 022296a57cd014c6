//! A writing run holds one batch at a time: its report lines go to the run's directory as each
//! batch commits and `report.json` is assembled from them by streaming. Over many batches the
//! report must list every identity once, in (node, service) order, as the same run in one batch
//! (its report held whole) lists them.

mod common;

use common::*;
use serde_json::Value;

/// What two runs of the same fleet report alike: everything but what each run makes anew
/// (serials, new file digests) and what names the run (its id, its times; a rollback's run date
/// is its clock).
fn comparable(report: &Value) -> Value {
    let mut report = report.clone();
    let object = report.as_object_mut().unwrap();
    for key in [
        "run_id",
        "started",
        "finished",
        "duration_seconds",
        "root",
        "as_of",
    ] {
        object.remove(key);
    }
    common::without_the_clock(object);
    for line in object["identities"].as_array_mut().unwrap() {
        if let Some(cert) = line.get_mut("cert").and_then(Value::as_object_mut) {
            cert.remove("new_serial");
        }
        for file in line["files"].as_array_mut().into_iter().flatten() {
            file.as_object_mut().unwrap().remove("new_sha256");
        }
    }
    report
}

#[test]
fn rotate_over_many_batches_reports_every_identity_once_in_order_as_one_batch_would() {
    let work = tempfile::tempdir().unwrap();
    let (many, one) = (work.path().join("many"), work.path().join("one"));
    let ids = fleet(&many, 300, 30);
    copy(&many, &one);
    // 300 identities in batches of 16: 19 batches, the last one short.
    let (streamed, held) = in_many_batches_and_in_one(
        &many,
        &one,
        &["rotate", "--as-of", AS_OF, "--format", "json"],
    );
    assert_eq!(
        dirs_of(&streamed),
        in_report_order(&ids),
        "every identity once, in order"
    );
    assert_eq!(streamed["counts"]["done"], 300);
    assert_eq!(comparable(&streamed), comparable(&held));
}

/// The dry run streams its lines as its run does (to a temporary file, writing nothing in the
/// fleet), and prints the report its run would write.
#[test]
fn a_dry_run_over_many_batches_prints_every_identity_once_in_order() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fleet");
    let ids = fleet(&root, 100, 30);
    let before = snapshot(&root);
    let (code, stdout, stderr) = run_env(
        &root,
        &["rotate", "--dry-run", "--format", "json"],
        &[("REKEY_TEST_BATCH", "7")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(snapshot(&root), before, "a dry run writes nothing");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(dirs_of(&report), in_report_order(&ids));
}

/// Runs `args` (`--as-of` among them where the command takes it) on `many` in batches of 16 and
/// on `one` in one batch; returns each run's saved
/// report (the newest), having checked that the many-batch run printed its report.json byte for
/// byte.
fn in_many_batches_and_in_one(
    many: &std::path::Path,
    one: &std::path::Path,
    args: &[&str],
) -> (Value, Value) {
    let in_batches_of = |root: &std::path::Path, size: &str| {
        let out = rekey()
            .args(args)
            .arg("--root")
            .arg(root)
            .env("REKEY_TEST_BATCH", size)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(matches!(out.status.code(), Some(0 | 4)), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let stdout = in_batches_of(many, "16");
    in_batches_of(one, "100000");
    let streamed = reports(many).pop().expect("the run's report");
    let held = reports(one).pop().expect("the run's report");
    let run = streamed["run_id"].as_str().unwrap();
    let saved = many.join(".rekey/runs").join(run).join("report.json");
    assert_eq!(stdout, std::fs::read_to_string(saved).unwrap());
    (streamed, held)
}

/// The `nodes/<node>/<service>` paths of a report's identities, in its order.
fn dirs_of(report: &Value) -> Vec<String> {
    report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dir"].as_str().unwrap().to_string())
        .collect()
}

/// `ids` in (node, service) order, the order of every report.
fn in_report_order(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort_by(|a, b| {
        let key = |d: &str| -> (String, String) {
            let mut parts = d.split('/').skip(1);
            (parts.next().unwrap().into(), parts.next().unwrap().into())
        };
        key(a).cmp(&key(b))
    });
    ids
}

/// `recover` streams the fleet as `rotate` does: over many batches its report lists every
/// identity once, in order, as one batch does, and the audit pairs each request with its outcome.
#[test]
fn recover_over_many_batches_reports_every_identity_once_in_order_as_one_batch_would() {
    let work = tempfile::tempdir().unwrap();
    let (many, one) = (work.path().join("many"), work.path().join("one"));
    // Issued 120 days back for 90 days: every token expired, every identity needs recover.
    let ids = fleet(&many, 150, 120);
    copy(&many, &one);
    let args = ["recover", "--all", "--reason", "the owners asked", "--yes"];
    let args = [
        &args[..],
        &["--operator", "alice", "--as-of", AS_OF, "--format", "json"],
    ]
    .concat();
    let (streamed, held) = in_many_batches_and_in_one(&many, &one, &args);
    assert_eq!(dirs_of(&streamed), in_report_order(&ids));
    assert_eq!(streamed["counts"]["done"], 150);
    assert_eq!(comparable(&streamed), comparable(&held));
    let audit = std::fs::read_to_string(many.join(".rekey/audit.jsonl")).unwrap();
    let events = |event: &str| {
        audit
            .lines()
            .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .count()
    };
    assert_eq!((events("requested"), events("recovered")), (150, 150));
}

/// `rollback` reads the run it undoes a line at a time: over many batches its report lists every
/// identity that run replaced once, in order, as one batch does, and the fleet is as before.
#[test]
fn rollback_over_many_batches_reports_every_identity_once_in_order_as_one_batch_would() {
    let work = tempfile::tempdir().unwrap();
    let (many, one) = (work.path().join("many"), work.path().join("one"));
    let ids = fleet(&many, 150, 30);
    let before = snapshot(&many);
    let (code, _, stderr) = run_env(&many, &["rotate"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    copy(&many, &one);
    let rotate = reports(&many).pop().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (streamed, held) =
        in_many_batches_and_in_one(&many, &one, &["rollback", &rotate, "--format", "json"]);
    assert_eq!(dirs_of(&streamed), in_report_order(&ids));
    assert_eq!(streamed["counts"]["done"], 150);
    assert_eq!(comparable(&streamed), comparable(&held));
    let after = snapshot(&many);
    let credentials = |s: &std::collections::BTreeMap<String, (Vec<u8>, u32)>| {
        s.iter()
            .filter(|(path, _)| path.starts_with("nodes/"))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(credentials(&after), credentials(&before), "every file back");
}

/// `apply` streams the plan and the fleet and meets them by merge: over many batches, with
/// identities the fleet refuses among those it rotates (one gone since the plan, one changed,
/// one the plan names past the fleet's last), its report lists every identity the plan asks for
/// once, in order, each as the same run in one batch reports it.
#[test]
fn apply_over_many_batches_reports_every_identity_once_in_order_as_one_batch_would() {
    let work = tempfile::tempdir().unwrap();
    let (many, one) = (work.path().join("many"), work.path().join("one"));
    fleet(&many, 300, 30);
    let plan = work.path().join("plan.toml");
    let (code, _, stderr) = run(&many, &["plan", "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    // Since the plan: one identity gone, one token changed; and the plan names one more.
    std::fs::remove_dir_all(many.join("nodes/node-07/svc-0107")).unwrap();
    let token = many.join("nodes/node-11/svc-0211/token.jwt");
    let mut changed = std::fs::read(&token).unwrap();
    changed.push(b'\n');
    std::fs::write(&token, changed).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    let sha = "0".repeat(64);
    let text = text.replace("identities = 300", "identities = 301")
        + &format!(
            "\n[[identity]]\nnode = \"zz-gone\"\nservice = \"svc\"\n\
             cert = {{ action = \"rotate\", reason = \"r\", sha256 = \"{sha}\" }}\n"
        );
    std::fs::write(&plan, text).unwrap();
    copy(&many, &one);
    let apply = ["apply", plan.to_str().unwrap(), "--format", "json"];
    // Exit 3: identities the plan asked for were skipped.
    let (code, stdout, stderr) = run_env(&many, &apply, &[("REKEY_TEST_BATCH", "16")]);
    assert_eq!(code, Some(3), "{stderr}");
    let (code, _, stderr) = run_env(&one, &apply, &[("REKEY_TEST_BATCH", "100000")]);
    assert_eq!(code, Some(3), "{stderr}");
    let streamed = reports(&many).pop().expect("the run's report");
    let held = reports(&one).pop().expect("the run's report");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed, streamed, "what the run printed is its report");
    let lines = streamed["identities"].as_array().unwrap();
    let dirs: Vec<&str> = lines.iter().map(|i| i["dir"].as_str().unwrap()).collect();
    let mut want: Vec<(String, String)> = (0..300)
        .map(|i| (format!("node-{:02}", i % 20), format!("svc-{i:04}")))
        .chain([("zz-gone".to_string(), "svc".to_string())])
        .collect();
    want.sort();
    let want: Vec<String> = want.iter().map(|(n, s)| format!("nodes/{n}/{s}")).collect();
    assert_eq!(
        dirs, want,
        "every identity the plan asks for once, in order"
    );
    let reason = |dir: &str| {
        let line = lines.iter().find(|l| l["dir"] == dir).unwrap();
        (
            line["outcome"].as_str().unwrap().to_string(),
            line["reason"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        reason("nodes/node-07/svc-0107"),
        (
            "skipped".into(),
            "no longer an identity of the fleet".into()
        )
    );
    assert_eq!(
        reason("nodes/node-11/svc-0211"),
        ("skipped".into(), "token.jwt changed since the plan".into())
    );
    assert_eq!(
        reason("nodes/zz-gone/svc"),
        (
            "skipped".into(),
            "no longer an identity of the fleet".into()
        )
    );
    assert_eq!(streamed["counts"]["done"], 298);
    assert_eq!(comparable(&streamed), comparable(&held));
}

/// A CA rotation stage streams the fleet as `rotate` does: over many batches `ca begin`'s report
/// lists every identity whose `ca.pem` it changes once, in order, with a `ca.pem` it refuses (a
/// link) reported skipped in its place and an identity without one left out, as one batch does.
#[test]
fn ca_begin_over_many_batches_reports_every_trust_file_once_in_order_as_one_batch_would() {
    let work = tempfile::tempdir().unwrap();
    let (many, one) = (work.path().join("many"), work.path().join("one"));
    let ids = fleet(&many, 150, 30);
    let ca = std::fs::read(many.join("ca/ca.crt")).unwrap();
    for id in &ids {
        std::fs::write(many.join(id).join("ca.pem"), &ca).unwrap();
    }
    let linked = many.join("nodes/node-05/svc-0045/ca.pem");
    std::fs::remove_file(&linked).unwrap();
    std::os::unix::fs::symlink("../../../ca/ca.crt", &linked).unwrap();
    std::fs::remove_file(many.join("nodes/node-09/svc-0069/ca.pem")).unwrap();
    copy(&many, &one);
    let begin = ["ca", "begin", "--format", "json"];
    // Exit 3: a trust file was skipped.
    let (code, stdout, stderr) = run_env(&many, &begin, &[("REKEY_TEST_BATCH", "16")]);
    assert_eq!(code, Some(3), "{stderr}");
    let (code, _, stderr) = run_env(&one, &begin, &[("REKEY_TEST_BATCH", "100000")]);
    assert_eq!(code, Some(3), "{stderr}");
    let streamed = reports(&many).pop().expect("the run's report");
    let held = reports(&one).pop().expect("the run's report");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed, streamed, "what the run printed is its report");
    let want: Vec<String> = in_report_order(&ids)
        .into_iter()
        .filter(|d| d != "nodes/node-09/svc-0069")
        .collect();
    assert_eq!(dirs_of(&streamed), want, "every trust file once, in order");
    let lines = streamed["identities"].as_array().unwrap();
    let link = lines
        .iter()
        .find(|l| l["dir"] == "nodes/node-05/svc-0045")
        .unwrap();
    assert_eq!(link["outcome"], "skipped");
    assert!(
        link["reason"]
            .as_str()
            .unwrap()
            .contains("ca.pem is a symbolic link"),
        "{link}"
    );
    assert_eq!(streamed["counts"]["done"], 148);
    assert_eq!(comparable(&streamed), comparable(&held));
}

/// A run killed over many batches is finished by the next writer, whose replay reads the
/// journal a line at a time and streams the report as a run does: the report lists every
/// identity the run reached once, in order, done where all its files are new on disk and failed
/// where they are old. Killed once a batch is ready (the replay finishes it), once one is only
/// prepared (the replay undoes it), and with the journal's first two batches swapped (out of
/// order, which rekey never writes: its lines are then held and sorted).
#[test]
fn a_replayed_run_over_many_batches_reports_every_identity_it_reached_once_in_order() {
    for (at, swapped) in [("ready#5", false), ("prepared#5", false), ("ready#5", true)] {
        let what = format!("killed at {at}, batches swapped: {swapped}");
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("fleet");
        let ids = fleet(&root, 150, 30);
        let before = snapshot(&root);
        let env = [("REKEY_TEST_BATCH", "16"), ("REKEY_CRASH_AT", at)];
        let (code, _, stderr) = run_env(&root, &["rotate"], &env);
        assert_eq!(code, None, "{what}: killed: {stderr}");
        let run = run_ids(&root).pop().expect("the killed run");
        let journal = root.join(".rekey/runs").join(&run).join("journal.jsonl");
        if swapped {
            swap_first_batches(&journal);
        }
        let (code, _, stderr) = run_env(
            &root,
            &["recover", "--all", "--reason", "replay", "--yes"],
            &[],
        );
        assert!(matches!(code, Some(0 | 3 | 4)), "{what}: {stderr}");
        assert!(stderr.contains("was interrupted"), "{what}: {stderr}");
        let report = reports(&root)
            .into_iter()
            .find(|r| r["run_id"] == run.as_str())
            .expect("the replayed run's report");
        assert_eq!(report["recovered_by_replay"], true, "{what}");
        let listed = dirs_of(&report);
        let mut once = in_report_order(&listed);
        once.dedup();
        assert_eq!(listed, once, "{what}: every identity once, in order");
        let now = snapshot(&root);
        let new = whole(&ids, &before, &now, &what);
        let lines = report["identities"].as_array().unwrap();
        for line in lines {
            let dir = line["dir"].as_str().unwrap();
            let cert = &now[&format!("{dir}/cert.pem")].0;
            let changed = before[&format!("{dir}/cert.pem")].0 != *cert;
            assert_eq!(line["outcome"] == "done", changed, "{what}: {dir}");
            if changed {
                use sha2::Digest;
                let file = line["files"].as_array().unwrap().iter();
                let listed = file.clone().find(|f| f["name"] == "cert.pem").unwrap();
                let digest = hex::encode(sha2::Sha256::digest(cert));
                assert_eq!(
                    listed["new_sha256"].as_str(),
                    Some(digest.as_str()),
                    "{what}"
                );
            }
        }
        assert_eq!(
            report["counts"]["done"], new,
            "{what}: every identity new is done"
        );
        assert_eq!(
            report["counts"]["credentials"],
            2 * new,
            "{what}: each identity done got a new certificate and a new token"
        );
        assert!(
            new >= 4 * 16,
            "{what}: four batches committed at least, {new} new"
        );
        let failed = lines.iter().filter(|l| l["outcome"] == "failed").count();
        assert_eq!(report["counts"]["failed"], failed, "{what}");
        assert_eq!(lines.len(), new + failed, "{what}: only done and failed");
    }
}

/// Swaps the journal's first two batches, each from its `prepare` to the next batch's: the
/// journal still follows the protocol, but its identities are no longer in order.
fn swap_first_batches(journal: &std::path::Path) {
    let text = std::fs::read_to_string(journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let prepares: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].contains(r#""op":"prepare""#))
        .take(3)
        .collect();
    let (a, b, c) = (prepares[0], prepares[1], prepares[2]);
    let swapped = [&lines[..a], &lines[b..c], &lines[a..b], &lines[c..]].concat();
    std::fs::write(journal, swapped.join("\n") + "\n").unwrap();
}
