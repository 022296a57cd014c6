//! Concurrency: real processes at once on one fleet. Two writers started together: exactly
//! one rotates, the other is refused by the lock (or, if it came second, finds nothing to do).
//! `status` run again and again during a `rotate`: every identity reads wholly old or wholly
//! new, never a mix, never a false problem.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

fn spawn(args: &[&str], root: &Path) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("rekey"))
        .args(args)
        .arg("--root")
        .arg(root)
        .args(["--as-of", AS_OF])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs that changed something: those whose report counts any identity done.
fn runs_with_work(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root.join(".rekey/runs")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|run| {
            std::fs::read_to_string(run.path().join("report.json")).is_ok_and(|text| {
                let report: serde_json::Value = serde_json::from_str(&text).unwrap();
                report["counts"]["done"].as_u64().unwrap() > 0
            })
        })
        .count()
}

#[test]
fn of_two_writers_started_together_exactly_one_proceeds() {
    let work = tempfile::tempdir().unwrap();
    let template = work.path().join("template");
    let ids = fleet(&template, 500, 30);
    let original = snapshot(&template);
    let root = work.path().join("fleet");
    let mut refused = 0;
    for round in 0..5 {
        let what = format!("round {round}");
        copy(&template, &root);
        let writers = [spawn(&["rotate"], &root), spawn(&["rotate"], &root)];
        let outs: Vec<_> = writers
            .into_iter()
            .map(|w| w.wait_with_output().unwrap())
            .collect();
        let mut codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap()).collect();
        codes.sort();
        for out in &outs {
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(1) => {
                    assert!(
                        stderr.contains("another rekey is writing") && stderr.contains("lock"),
                        "{what}: {stderr}"
                    );
                    refused += 1;
                }
                other => panic!("{what}: exit {other:?}: {stderr}"),
            }
        }
        // One refused at once, or the second ran after the first and found nothing due.
        assert!(codes == [0, 1] || codes == [0, 0], "{what}: {codes:?}");
        assert_eq!(runs_with_work(&root), 1, "{what}: exactly one run rotated");
        assert_eq!(
            whole(&ids, &original, &snapshot(&root), &what),
            ids.len(),
            "{what}: every identity rotated once"
        );
        assert!(temp_files(&root).is_empty(), "{what}");
    }
    eprintln!("the lock refused the second writer in {refused} of 5 rounds");
}

#[test]
fn status_during_rotate_reads_every_identity_wholly_old_or_wholly_new() {
    let work = tempfile::tempdir().unwrap();
    let template = work.path().join("template");
    // Two journal batches, so that status can land between them too.
    fleet(&template, 1500, 30);
    let old = states(&template);
    let rotated = work.path().join("rotated");
    copy(&template, &rotated);
    assert_eq!(run(&rotated, &["rotate"]).0, 0);
    let new = states(&rotated);
    let identities: Vec<String> = old
        .keys()
        .map(|k| k.rsplit_once('/').unwrap().0.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        identities
            .iter()
            .all(|id| old[&format!("{id}/cert")] != new[&format!("{id}/cert")]),
        "old and new must be told apart by state"
    );

    let root = work.path().join("fleet");
    let (mut during, mut mixed_fleet) = (0, 0);
    for round in 0..4 {
        copy(&template, &root);
        let mut writer = spawn(&["rotate"], &root);
        let mut seen: Vec<BTreeMap<String, (String, String)>> = Vec::new();
        while matches!(writer.try_wait(), Ok(None)) {
            seen.push(states(&root));
            during += 1;
        }
        assert!(writer.wait().unwrap().success(), "round {round}");
        for (n, now) in seen.iter().enumerate() {
            let what = format!("round {round}, status {n}");
            let mut generations = [0, 0];
            for id in &identities {
                let pick = |side: &BTreeMap<String, (String, String)>| {
                    ["cert", "token"].map(|kind| side[&format!("{id}/{kind}")].clone())
                };
                let read = pick(now);
                if read == pick(&old) {
                    generations[0] += 1;
                } else if read == pick(&new) {
                    generations[1] += 1;
                } else {
                    panic!("{what}: {id} is neither old nor new: {read:?}");
                }
            }
            if generations[0] > 0 && generations[1] > 0 {
                mixed_fleet += 1;
            }
        }
    }
    eprintln!("{during} status runs during a rotate; {mixed_fleet} saw the fleet part rotated");
    assert!(during > 0, "no status ran while a rotate was running");
}
