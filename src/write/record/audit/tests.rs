use super::*;

fn event(kind: &str, run: &str, n: usize) -> String {
    json!({
        "time": "2026-11-28T00:00:00Z",
        "event": kind,
        "run_id": run,
        "operator": "ops",
        "node": format!("n{n:03}"),
        "service": "svc",
        "reason": "missed the window",
    })
    .to_string()
}

fn unsettled(root: &Path, run: &str) -> (bool, Vec<Event>) {
    let u = Unsettled::of(root, run).unwrap();
    let merged = matches!(u, Unsettled::Merged { .. });
    let mut each = u.each().unwrap();
    let events: Vec<Event> = each.by_ref().collect();
    each.end().unwrap();
    (merged, events)
}

/// The requests of a run without a `recovered` line: met by merge in a log a run wrote (other
/// runs' lines and a torn line between), held as sets in a log out of order, the same in both;
/// lines appended after the log was first read (the settling's own) are not read.
#[test]
fn a_runs_unsettled_requests_are_met_by_merge_or_held_alike() {
    let expected: Vec<Event> = (0..200)
        .filter(|n| n % 3 != 0)
        .map(|n| {
            (
                format!("n{n:03}"),
                "svc".to_string(),
                "ops".to_string(),
                "missed the window".to_string(),
            )
        })
        .collect();
    for shuffled in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join(".rekey")).unwrap();
        let mut log: Vec<String> = Vec::new();
        for n in 0..200 {
            log.push(event("requested", "r1", n));
            log.push(event("requested", "r2", n));
        }
        log.push("{\"event\":\"recovered\",\"run_id\":\"r1\",\"no".into());
        log.extend((0..200).step_by(3).map(|n| event("recovered", "r1", n)));
        log.extend((0..200).map(|n| event("recovered", "r2", n)));
        if shuffled {
            log.swap(0, 2);
        }
        let path = path(root);
        std::fs::write(&path, log.join("\n") + "\n").unwrap();
        let u = Unsettled::of(root, "r1").unwrap();
        // The settling's own lines, appended once the log was read.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        for n in 0..200 {
            writeln!(file, "{}", event("recovered", "r1", n)).unwrap();
        }
        assert_eq!(matches!(u, Unsettled::Merged { .. }), !shuffled);
        let mut each = u.each().unwrap();
        let got: Vec<Event> = each.by_ref().collect();
        each.end().unwrap();
        assert_eq!(got, expected, "shuffled: {shuffled}");
        // Read again now, every request is settled (the settled lines out of order now).
        assert_eq!(unsettled(root, "r1"), (false, Vec::new()));
        assert_eq!(unsettled(root, "r3"), (true, Vec::new()));
    }
    let none = tempfile::tempdir().unwrap();
    assert_eq!(unsettled(none.path(), "r1"), (false, Vec::new()));
}

/// A log whose last line a crash cut short: the next line appended stands on its own line and
/// reads back, the torn one is skipped as before.
#[test]
fn a_line_appended_after_a_torn_one_stands_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join(".rekey")).unwrap();
    let path = path(root);
    let torn = event("requested", "r1", 1);
    std::fs::write(
        &path,
        format!("{}\n{}", event("requested", "r1", 0), &torn[..20]),
    )
    .unwrap();
    let time = "2026-11-28T00:00:00Z".parse().unwrap();
    pruned(root, "r1", 3, time).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let last: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(last["event"], "pruned");
    assert!(text.ends_with('\n'));
    // A log that ends whole gains no empty line.
    pruned(root, "r1", 4, time).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
}
