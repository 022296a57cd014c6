use super::*;
use crate::write::record::calls::HookKind;
use crate::write::record::entries::sample::change;

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
        journal
            .append(&Record::Abort {
                batch: 0,
                reason: None,
            })
            .unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2, "{torn:?}");
        assert!(
            matches!(
                records[1],
                Record::Abort {
                    batch: 0,
                    reason: None
                }
            ),
            "{torn:?}"
        );
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
        journal
            .append(&Record::Abort {
                batch: 0,
                reason: None,
            })
            .unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), kept + 1, "{torn:?}");
        assert!(
            matches!(
                records[kept],
                Record::Abort {
                    batch: 0,
                    reason: None
                }
            ),
            "{torn:?}"
        );
    }
}

/// An identity a batch left untouched is journaled by name, outcome and reason, and read back
/// only if its name is an identity's and its outcome one a run gives an untouched identity.
#[test]
fn untouched_identities_are_journaled_by_name_outcome_and_reason() {
    let record = Record::Unchanged {
        batch: 3,
        identities: vec![Untouched {
            id: IdentityId::new("n1", "kms").unwrap(),
            left: LeftAs::Skipped,
            reason: "no longer in state recover".into(),
        }],
    };
    let line = serde_json::to_string(&record).unwrap();
    assert_eq!(
        line,
        r#"{"op":"unchanged","batch":3,"identities":[{"node":"n1","service":"kms","outcome":"skipped","reason":"no longer in state recover"}]}"#
    );
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
    for bad in [
        line.replace(r#""n1""#, r#""../n1""#),
        line.replace("skipped", "done"),
        line.replace(r#""reason""#, r#""why""#),
    ] {
        assert!(serde_json::from_str::<Record>(&bad).is_err(), "{bad}");
    }
}
