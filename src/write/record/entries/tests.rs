use super::*;
use crate::write::record::calls::HookKind;

fn change(node: &str) -> Change {
    Change {
        id: IdentityId::new(node, "s").unwrap(),
        files: vec![FileChange {
            name: "cert.pem".into(),
            old_sha256: Digest::of(b"a"),
            new_sha256: Digest::of(b"b"),
        }],
    }
}

#[test]
fn replay_finishes_ready_batches_and_undoes_the_rest() {
    let start = Record::Start {
        version: 1,
        run_id: "r".into(),
        command: "rotate".into(),
        as_of: "t".into(),
        operator: None,
        reason: None,
    };
    let prepare = |batch, nodes: &[&str]| Record::Prepare {
        batch,
        identities: nodes.iter().map(|n| change(n)).collect(),
    };
    let ready = |batch, nodes: &[&str]| Record::Ready {
        batch,
        identities: nodes.iter().map(|n| format!("{n}/s")).collect(),
    };
    let cases: Vec<(&str, Vec<Record>, Vec<Unfinished>)> = vec![
        ("nothing begun", vec![start.clone()], vec![]),
        (
            "committed",
            vec![
                start.clone(),
                prepare(0, &["a"]),
                ready(0, &["a"]),
                Record::Commit { batch: 0 },
            ],
            vec![],
        ),
        (
            "aborted",
            vec![prepare(0, &["a"]), Record::Abort { batch: 0 }],
            vec![],
        ),
        (
            "prepared only: undo",
            vec![prepare(0, &["a", "b"])],
            vec![Unfinished::Undo {
                batch: 0,
                changes: vec![change("a"), change("b")],
            }],
        ),
        (
            "ready: finish",
            vec![prepare(0, &["a"]), ready(0, &["a"])],
            vec![Unfinished::Finish {
                batch: 0,
                changes: vec![change("a")],
            }],
        ),
        (
            "ready for some: finish those, undo the others",
            vec![prepare(0, &["a", "b"]), ready(0, &["b"])],
            vec![
                Unfinished::Undo {
                    batch: 0,
                    changes: vec![change("a")],
                },
                Unfinished::Finish {
                    batch: 0,
                    changes: vec![change("b")],
                },
            ],
        ),
        (
            "second batch interrupted",
            vec![
                prepare(0, &["a"]),
                ready(0, &["a"]),
                Record::Commit { batch: 0 },
                prepare(1, &["b"]),
            ],
            vec![Unfinished::Undo {
                batch: 1,
                changes: vec![change("b")],
            }],
        ),
    ];
    for (name, records, want) in cases {
        assert_eq!(unfinished(&records), want, "{name}");
    }
    let committed_run = [
        prepare(0, &["a", "b"]),
        ready(0, &["b"]),
        Record::Commit { batch: 0 },
        prepare(1, &["c"]),
        ready(1, &["c"]),
    ];
    assert_eq!(committed(&committed_run), vec![change("b")]);
}

#[test]
fn hook_calls_name_their_source_and_old_journals_still_read() {
    use crate::write::record::calls::HookSource;
    let cases = [
        (
            "reload",
            r#"{"call":1,"kind":"deploy","node":"n","service":"s","source":"reload"}"#,
            HookSource::Reload,
        ),
        (
            "a hooks folder executable",
            r#"{"call":1,"kind":"post","source":"hooks/post/notify"}"#,
            HookSource::Folder {
                kind: HookKind::Post,
                name: "notify".into(),
            },
        ),
        (
            "the previous release: command and shell read, only the digest kept",
            r#"{"call":1,"kind":"deploy","source":"--deploy-hook","command":"touch /tmp/x","shell":true}"#,
            HookSource::CommandLine {
                kind: HookKind::Deploy,
                sha256: Digest::of(b"touch /tmp/x"),
                position: 0,
            },
        ),
        (
            "the previous release's folder hook",
            r#"{"call":1,"kind":"deploy","source":"hooks/deploy/a","command":"/x/hooks/deploy/a","shell":false}"#,
            HookSource::Folder {
                kind: HookKind::Deploy,
                name: "a".into(),
            },
        ),
        (
            "a path planted as a folder hook's name",
            r#"{"call":1,"kind":"deploy","source":"hooks/deploy/../../bin/sh"}"#,
            HookSource::Unknown("hooks/deploy/../../bin/sh".into()),
        ),
        (
            "a command-line hook with no digest",
            r#"{"call":1,"kind":"post","source":"--post-hook"}"#,
            HookSource::Unknown("--post-hook".into()),
        ),
    ];
    for (name, line, want) in cases {
        let call: HookCall = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(call.source, want, "{name}");
        let again = serde_json::to_string(&call).unwrap();
        assert!(
            !again.contains("command\""),
            "{name}: never written back: {again}"
        );
        assert!(!again.contains("touch"), "{name}: {again}");
        assert_eq!(
            serde_json::from_str::<HookCall>(&again).unwrap(),
            call,
            "{name}"
        );
    }
    let unknown = r#"{"call":1,"kind":"post","source":"reload","extra":1}"#;
    assert!(
        serde_json::from_str::<HookCall>(unknown).is_err(),
        "unknown fields refused"
    );
}

#[test]
fn a_torn_last_line_is_ignored_but_a_torn_middle_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let good = serde_json::to_string(&Record::Commit { batch: 3 }).unwrap();
    std::fs::write(&path, format!("{good}\n{{\"op\":\"prep")).unwrap();
    assert_eq!(read(&path).unwrap(), vec![Record::Commit { batch: 3 }]);
    std::fs::write(&path, format!("{{\"op\":\"prep\n{good}\n")).unwrap();
    assert!(read(&path).is_err());
}

#[test]
fn a_torn_last_line_is_cut_off_before_anything_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let start = "{\"op\":\"start\",\"version\":2,\"run_id\":\"r\",\"command\":\"rotate\",\"as_of\":\"2026-11-28T00:00:00Z\"}\n";
    // A power cut kept the second half of an unsynced append, not the first: zeros, then text.
    for torn in ["\0\0\0\0\"batch\":0}\n", "{\"op\":\"commit\",\"ba"] {
        std::fs::write(&path, format!("{start}{torn}")).unwrap();
        let mut journal = Journal::open(&path).unwrap();
        journal.append(&Record::Abort { batch: 0 }).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2, "{torn:?}");
        assert!(matches!(records[1], Record::Abort { batch: 0 }), "{torn:?}");
    }
}

/// Opening a journal reads only its end: a torn line after records longer than the piece read
/// at a time is still cut off, and a whole last line of that length is kept.
#[test]
fn a_torn_end_after_long_records_is_cut_off_and_a_whole_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let long = Record::Prepare {
        batch: 0,
        identities: (0..2000).map(|i| change(&format!("n{i}"))).collect(),
    };
    let long = serde_json::to_string(&long).unwrap();
    assert!(long.len() > 3 << 16, "longer than the pieces read");
    for (torn, kept) in [
        ("", 2),
        ("{\"op\":\"commit\",\"ba", 2),
        ("\0\0\"batch\":0}\n", 2),
    ] {
        std::fs::write(&path, format!("{long}\n{long}\n{torn}")).unwrap();
        let mut journal = Journal::open(&path).unwrap();
        journal.append(&Record::Abort { batch: 0 }).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), kept + 1, "{torn:?}");
        assert!(
            matches!(records[kept], Record::Abort { batch: 0 }),
            "{torn:?}"
        );
    }
}

/// A replay's first pass holds only the batches still open, notes whether the batches' identities
/// come in report order (each once), and refuses a batch's step journaled before its `prepare`.
#[test]
fn the_first_pass_keeps_open_batches_and_refuses_steps_before_their_prepare() {
    let prepare = |batch, nodes: &[&str]| Record::Prepare {
        batch,
        identities: nodes.iter().map(|n| change(n)).collect(),
    };
    let ready = |batch, nodes: &[&str]| Record::Ready {
        batch,
        identities: nodes.iter().map(|n| format!("{n}/s")).collect(),
    };
    let hooks = |batch| Record::Hooks {
        batch: Some(batch),
        calls: vec![HookCall {
            call: batch,
            kind: HookKind::Deploy,
            id: Some(IdentityId::new("x", "s").unwrap()),
            source: crate::write::record::calls::HookSource::Reload,
            not_after: None,
        }],
    };
    let of = |records: &[Record]| Left::of(Path::new("j"), records.iter().cloned().map(Ok));
    let journal = [
        prepare(0, &["a", "b"]),
        hooks(0),
        ready(0, &["a", "b"]),
        Record::Commit { batch: 0 },
        prepare(1, &["c", "d"]),
        hooks(1),
        ready(1, &["d"]),
    ];
    let left = of(&journal).unwrap();
    assert!(left.in_order && !left.ended);
    assert_eq!(
        left.hooks_of(0),
        &[],
        "a committed batch's calls are not held"
    );
    assert_eq!(left.hooks_of(1).len(), 1);
    assert!(
        !left.undo_closes(1),
        "its finish closes a batch that was ready"
    );
    let committed: Vec<Vec<Change>> = left
        .committed(journal.iter().cloned().map(Ok))
        .map(Result::unwrap)
        .collect();
    assert_eq!(committed, vec![vec![change("a"), change("b")]]);

    let out_of_order = [prepare(0, &["b"]), prepare(1, &["a"])];
    assert!(!of(&out_of_order).unwrap().in_order);
    let twice = [prepare(0, &["a", "a"])];
    assert!(!of(&twice).unwrap().in_order, "an identity named twice");

    for (what, early) in [
        ("committed", Record::Commit { batch: 0 }),
        ("ready", ready(0, &["a"])),
        ("aborted", Record::Abort { batch: 0 }),
        ("given hooks", hooks(0)),
    ] {
        let err = of(&[early, prepare(0, &["a"])]).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "journal j line 1: batch 0 is {what} before it is prepared"
            )),
            "{err}"
        );
    }
}
