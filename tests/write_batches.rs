//! A writing run holds one batch at a time: its report lines go to the run's directory as each
//! batch commits and `report.json` is assembled from them by streaming. Over many batches the
//! report must list every identity once, in (node, service) order, as the same run in one batch
//! (its report held whole) lists them.

mod common;

use common::*;
use serde_json::Value;

/// What two runs of the same fleet report alike: everything but what each run makes anew
/// (serials, new file digests) and what names the run (its id, its times).
fn comparable(report: &Value) -> Value {
    let mut report = report.clone();
    let object = report.as_object_mut().unwrap();
    for key in ["run_id", "started", "finished", "duration_seconds", "root"] {
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
    let (code, stdout, stderr) = run_env(
        &many,
        &["rotate", "--format", "json"],
        &[("REKEY_TEST_BATCH", "16")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run_env(
        &one,
        &["rotate", "--format", "json"],
        &[("REKEY_TEST_BATCH", "100000")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let streamed = reports(&many).pop().expect("the run's report");
    let held = reports(&one).pop().expect("the run's report");
    // What the run printed is its report.json, byte for byte.
    let saved = std::fs::read_dir(many.join(".rekey/runs"))
        .unwrap()
        .map(|d| d.unwrap().path().join("report.json"))
        .find(|p| p.is_file())
        .unwrap();
    assert_eq!(stdout, std::fs::read_to_string(saved).unwrap());
    let dirs: Vec<&str> = streamed["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dir"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_by_key(|d| {
        let mut parts = d.split('/').skip(1);
        (parts.next().unwrap(), parts.next().unwrap())
    });
    assert_eq!(dirs, want, "every identity once, in (node, service) order");
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
    let dirs: Vec<String> = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dir"].as_str().unwrap().to_string())
        .collect();
    let mut want = ids.clone();
    want.sort_by(|a, b| {
        let key = |d: &str| -> (String, String) {
            let mut parts = d.split('/').skip(1);
            (parts.next().unwrap().into(), parts.next().unwrap().into())
        };
        key(a).cmp(&key(b))
    });
    assert_eq!(dirs, want);
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
