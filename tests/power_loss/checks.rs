//! What must hold after a cut and the next writing command, checked from outside: every
//! identity wholly old or wholly new, no file lost, empty or partial, every run's report and
//! backups whole, the audit log's lines, the journal's promises, every hook run.

use std::path::Path;

use crate::common::*;
use crate::drive::Tally;
use crate::lab::{Lab, Snapshot};
use crate::openssl::openssl_fleet;

/// What the fleet must be after the cut run and the next writing command.
pub enum Expect<'a> {
    /// Every identity of `targets` wholly new, every other wholly old (against `before`).
    New { targets: &'a [String] },
    /// Byte for byte this.
    Exactly(&'a Snapshot),
}

/// Checks the fleet from outside; counts torn and lost identities.
pub fn check(lab: &Lab, before: &Snapshot, expect: &Expect<'_>, what: &str, tally: &mut Tally) {
    let root = lab.root();
    // rekey's verifier (what the crash suite reads) reads the fleet while the rest is checked.
    let verifier = {
        let root = root.clone();
        std::thread::spawn(move || states(&root))
    };
    let now = snapshot(&root);
    for id in &lab.ids {
        let present: Vec<bool> = FILES
            .iter()
            .map(|f| now.contains_key(&format!("{id}/{f}")))
            .collect();
        if present.iter().any(|p| !p) {
            eprintln!("{what}: {id} lost a file: {present:?}");
            tally.lost += 1;
            continue;
        }
        let changed: Vec<bool> = FILES
            .iter()
            .map(|f| before[&format!("{id}/{f}")] != now[&format!("{id}/{f}")])
            .collect();
        let empty = FILES.iter().any(|f| now[&format!("{id}/{f}")].0.is_empty());
        let mixed = changed.iter().any(|c| *c) && !changed.iter().all(|c| *c);
        let wrong = match expect {
            Expect::New { targets } => changed[0] != targets.contains(id),
            Expect::Exactly(want) => FILES
                .iter()
                .any(|f| want[&format!("{id}/{f}")] != now[&format!("{id}/{f}")]),
        };
        if empty || mixed || wrong {
            eprintln!(
                "{what}: {id} is torn (changed {changed:?}, empty {empty}, expected otherwise {wrong})"
            );
            tally.torn += 1;
        }
    }
    if let Expect::Exactly(want) = expect {
        assert!(now == **want, "{what}: not byte-exact");
    }
    assert_eq!(
        temp_files(&root),
        Vec::<String>::new(),
        "{what}: temporary files left"
    );
    // Every run's backups hold the old bytes (a pruned run has none left: prune removes them,
    // and the audit log says so).
    let runs = root.join(".rekey/runs");
    let pruned = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap_or_default();
    let hidden = tempfile::tempdir().unwrap();
    for run in std::fs::read_dir(&runs).into_iter().flatten() {
        let run = run.unwrap();
        let id = run.file_name().to_string_lossy().into_owned();
        if !run.path().join("backup").exists() {
            assert!(pruned.contains(&id), "{what}: run {id} lost its backups");
            if let Ok(report) = std::fs::read(run.path().join("report.json")) {
                assert_report_valid(&serde_json::from_slice(&report).unwrap(), what);
            }
            std::fs::rename(run.path(), hidden.path().join(&id)).unwrap();
        }
    }
    backups_intact(&root, what);
    audit_whole(&root, what);
    for run in std::fs::read_dir(hidden.path()).unwrap() {
        let run = run.unwrap();
        std::fs::rename(run.path(), runs.join(run.file_name())).unwrap();
    }
    // Each run has its report (`backups_intact` checked each against the schema).
    let without: Vec<_> = std::fs::read_dir(root.join(".rekey/runs"))
        .into_iter()
        .flatten()
        .map(|run| run.unwrap().path())
        .filter(|run| !run.join("report.json").is_file())
        .collect();
    assert!(
        without.is_empty(),
        "{what}: runs without their report: {without:?}"
    );
    // rekey's verifier (what the crash suite reads): no identity is a problem.
    let problems: Vec<_> = verifier
        .join()
        .unwrap()
        .into_iter()
        .filter(|(_, (s, _))| s == "problem")
        .collect();
    assert!(problems.is_empty(), "{what}: {problems:?}");
    openssl_fleet(&root, &lab.ids, what);
}

/// What a command that exited left on the disk as a cut after it left it (before any other
/// command could repair it): the report of each run not in `runs_before` whole (its own run's,
/// and the schema's), and the audit log's lines (see [`audit_whole`]).
pub fn exited_whole(root: &Path, runs_before: &[String], what: &str) {
    for run in std::fs::read_dir(root.join(".rekey/runs"))
        .into_iter()
        .flatten()
    {
        let run = run.unwrap();
        if runs_before.contains(&run.file_name().to_string_lossy().into_owned()) {
            continue;
        }
        let report = run.path().join("report.json");
        let bytes = std::fs::read(&report).unwrap_or_else(|e| {
            panic!(
                "{what}: the run's report is lost: {}: {e}",
                report.display()
            )
        });
        let report: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{what}: the run's report is not whole: {e}"));
        assert_eq!(
            report["run_id"],
            *run.file_name().to_string_lossy(),
            "{what}"
        );
        assert_report_valid(&report, what);
    }
    audit_whole(root, what);
}

/// The audit log keeps what `recover` changed: every identity a recover run's report has done
/// has its `requested` line of that run, and its `recovered` line (rekey settles the audit log
/// before it ends the run's journal, so a run cut off before its end is replayed, and the
/// replay writes what is missing).
pub fn audit_whole(root: &Path, what: &str) {
    let log = std::fs::read_to_string(root.join(".rekey/audit.jsonl")).unwrap_or_default();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: audit line {l}: {e}")))
        .collect();
    for report in reports_of(root)
        .iter()
        .filter(|r| r["command"] == "recover")
    {
        for i in report["identities"].as_array().unwrap() {
            if i["outcome"] != "done" {
                continue;
            }
            let has = |event: &str| {
                lines.iter().any(|l| {
                    l["event"] == event
                        && l["run_id"] == report["run_id"]
                        && l["node"] == i["node"]
                        && l["service"] == i["service"]
                })
            };
            for event in ["requested", "recovered"] {
                assert!(
                    has(event),
                    "{what}: the audit log lost the {event} line of {}/{} (run {})",
                    i["node"],
                    i["service"],
                    report["run_id"]
                );
            }
        }
    }
}

/// Every run's report, as JSON (the schema is checked by `backups_intact`).
pub fn reports_of(root: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(root.join(".rekey/runs"))
        .into_iter()
        .flatten()
        .filter_map(|run| std::fs::read(run.unwrap().path().join("report.json")).ok())
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .collect()
}

/// What the cut run's journal says is durable, on the disk as the cut left it (before any
/// replay): each identity a `ready` names has each new file, in place or in its temporary file;
/// each one a `commit` closes has them in place. Returns how many identities break a promise.
pub fn journal_kept(root: &Path, runs_before: &[String], what: &str) -> usize {
    use sha2::Digest;
    let digest = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| hex::encode(sha2::Sha256::digest(b)))
    };
    let Ok(runs) = std::fs::read_dir(root.join(".rekey/runs")) else {
        return 0;
    };
    let mut broken = 0;
    for run in runs {
        let run = run.unwrap();
        let id = run.file_name().to_string_lossy().into_owned();
        if runs_before.contains(&id) {
            continue;
        }
        let text = std::fs::read(run.path().join("journal.jsonl")).unwrap_or_default();
        // The last line may be cut short (never synced whole): the parse stops there.
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&text)
            .lines()
            .map_while(|l| serde_json::from_str(l).ok())
            .collect();
        let op = |r: &serde_json::Value, o: &str| r["op"] == o;
        for prepare in records.iter().filter(|r| op(r, "prepare")) {
            let batch = &prepare["batch"];
            let ready: Vec<&str> = records
                .iter()
                .filter(|r| op(r, "ready") && r["batch"] == *batch)
                .flat_map(|r| {
                    r["identities"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap())
                })
                .collect();
            let committed = records
                .iter()
                .any(|r| op(r, "commit") && r["batch"] == *batch);
            for change in prepare["identities"].as_array().unwrap() {
                let name = format!(
                    "{}/{}",
                    change["node"].as_str().unwrap(),
                    change["service"].as_str().unwrap()
                );
                if !ready.contains(&name.as_str()) {
                    continue;
                }
                let dir = root.join("nodes").join(&name);
                for f in change["files"].as_array().unwrap() {
                    let (file, new) = (f["name"].as_str().unwrap(), f["new_sha256"].as_str());
                    let live = digest(&dir.join(file));
                    let temp = digest(&dir.join(format!(".rekey-new.{id}.{file}")));
                    let kept = live.as_deref() == new || (!committed && temp.as_deref() == new);
                    if !kept {
                        eprintln!(
                            "{what}: the journal says {name}/{file} is durable (batch {batch}, committed {committed}), the disk lost it"
                        );
                        broken += 1;
                        break;
                    }
                }
            }
        }
    }
    broken
}

/// Every identity in `ids` had a deploy hook run (a line in the hooks' log).
pub fn hooks_ran(lab: &Lab, ids: &[String], what: &str) {
    let log = std::fs::read_to_string(lab.hooks.join("deploy.log")).unwrap_or_default();
    let ran: std::collections::BTreeSet<&str> = log.lines().collect();
    for id in ids {
        let name = id.trim_start_matches("nodes/");
        assert!(
            ran.contains(name),
            "{what}: the deploy hook of {id} never ran"
        );
    }
    let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
}
