use std::path::Path;

use super::*;
use crate::write::record::calls::HookKind;
use crate::write::record::entries::sample::{change, prepare, ready};

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
            vec![
                prepare(0, &["a"]),
                Record::Abort {
                    batch: 0,
                    reason: None,
                },
            ],
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

/// A replay's first pass holds only the batches still open, notes whether the batches' identities
/// come in report order (each once), and refuses a batch's step journaled before its `prepare`.
#[test]
fn the_first_pass_keeps_open_batches_and_refuses_steps_before_their_prepare() {
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
    let untouched = |batch, node: &str| Record::Unchanged {
        batch,
        identities: vec![crate::write::record::entries::Untouched {
            id: IdentityId::new(node, "s").unwrap(),
            left: crate::write::record::entries::LeftAs::Skipped,
            reason: "why".into(),
        }],
    };
    let journal = [
        untouched(0, "aa"),
        prepare(0, &["a", "b"]),
        hooks(0),
        ready(0, &["a", "b"]),
        Record::Commit { batch: 0 },
        untouched(1, "cc"),
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
    let parts: Vec<Part> = left
        .parts(journal.iter().cloned().map(Ok))
        .map(Result::unwrap)
        .collect();
    let untouched_part = |batch, node| match untouched(batch, node) {
        Record::Unchanged { batch, identities } => Part::Unchanged(batch, identities),
        _ => unreachable!(),
    };
    let Part::Unchanged(_, aa) = untouched_part(0, "aa") else {
        unreachable!()
    };
    assert_eq!(
        parts,
        vec![
            Part::Committed(0, vec![change("a"), change("b")], aa),
            untouched_part(1, "cc"),
        ],
        "a committed batch's untouched identities in its part; an open one's as they come"
    );

    let out_of_order = [prepare(0, &["b"]), prepare(1, &["a"])];
    assert!(!of(&out_of_order).unwrap().in_order);
    let twice = [prepare(0, &["a", "a"])];
    assert!(!of(&twice).unwrap().in_order, "an identity named twice");

    for (what, early) in [
        ("committed", Record::Commit { batch: 0 }),
        ("ready", ready(0, &["a"])),
        (
            "aborted",
            Record::Abort {
                batch: 0,
                reason: None,
            },
        ),
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
    let twice = [
        prepare(0, &["a"]),
        Record::Abort {
            batch: 0,
            reason: None,
        },
        prepare(0, &["b"]),
    ];
    let err = of(&twice).unwrap_err().to_string();
    assert!(
        err.contains("journal j line 3: batch 0 is prepared twice"),
        "{err}"
    );
}

/// A batch's identities left unchanged sort in among its prepared ones; a journal is in order
/// when each batch's two lists are, none is in both, and each batch follows the one before. An
/// `unchanged` after its batch's `prepare`, or twice for a batch, is damaged.
#[test]
fn identities_left_unchanged_are_checked_for_order_with_their_batch() {
    let untouched = |batch, nodes: &[&str]| Record::Unchanged {
        batch,
        identities: nodes
            .iter()
            .map(|n| crate::write::record::entries::Untouched {
                id: IdentityId::new(n, "s").unwrap(),
                left: crate::write::record::entries::LeftAs::Failed,
                reason: "why".into(),
            })
            .collect(),
    };
    let of = |records: &[Record]| Left::of(Path::new("j"), records.iter().cloned().map(Ok));
    let in_order = |records: &[Record]| of(records).unwrap().in_order;
    assert!(in_order(&[
        untouched(0, &["b", "d"]),
        prepare(0, &["a", "c"]),
        Record::Abort {
            batch: 0,
            reason: None
        },
        untouched(1, &["e"]),
        untouched(2, &["f"]),
        prepare(2, &["g"]),
    ]));
    for (what, journal) in [
        (
            "named in both",
            vec![untouched(0, &["a"]), prepare(0, &["a"])],
        ),
        (
            "a list out of order",
            vec![untouched(0, &["c", "b"]), prepare(0, &["d"])],
        ),
        (
            "before the batch before",
            vec![
                prepare(0, &["b"]),
                Record::Commit { batch: 0 },
                untouched(1, &["a"]),
            ],
        ),
        (
            "a batch that staged nothing, then one before it",
            vec![untouched(0, &["c"]), prepare(1, &["b"])],
        ),
    ] {
        assert!(!in_order(&journal), "{what}");
    }
    for journal in [
        vec![prepare(0, &["a"]), untouched(0, &["b"])],
        vec![untouched(0, &["a"]), untouched(0, &["b"])],
    ] {
        let err = of(&journal).unwrap_err().to_string();
        assert!(
            err.contains("line 2: batch 0 names identities left unchanged"),
            "{err}"
        );
    }
}

/// What a journal says of the identities a batch failed or undid reaches the second pass with
/// its reasons: a committed batch's `failed` records (before its `ready`, or after its renames)
/// make those identities failed, with why; a batch undone with a reason hands over each identity
/// it prepared, failed with that reason (or the one its `failed` record gave it, as the run
/// reports them); one undone without a reason hands over nothing; a closed batch's identities
/// left untouched come in its part (to be sorted with it); the run's `stopped` and the hooks
/// that failed are kept; a journal of a later version, or of version 0, is refused.
#[test]
fn failures_undone_batches_and_a_stop_reach_the_replayed_report_with_their_reasons() {
    use crate::write::record::entries::{Failure, LeftAs, Untouched};
    let failed = |batch, node: &str, why: &str| Record::Failed {
        batch,
        identities: vec![Failure {
            id: IdentityId::new(node, "s").unwrap(),
            reason: why.into(),
        }],
    };
    let lost = |node: &str, why: &str| Untouched {
        id: IdentityId::new(node, "s").unwrap(),
        left: LeftAs::Failed,
        reason: why.into(),
    };
    let untouched = |batch, node: &str| Record::Unchanged {
        batch,
        identities: vec![Untouched {
            id: IdentityId::new(node, "s").unwrap(),
            left: LeftAs::Skipped,
            reason: "left alone".into(),
        }],
    };
    let skipped = |node: &str| Untouched {
        id: IdentityId::new(node, "s").unwrap(),
        left: LeftAs::Skipped,
        reason: "left alone".into(),
    };
    let journal = [
        untouched(0, "a0"),
        prepare(0, &["a", "b", "c"]),
        failed(0, "b", "staging failed"),
        ready(0, &["a", "c"]),
        failed(0, "c", "moved away"),
        Record::HookDone {
            call: 1,
            ok: false,
            status: None,
        },
        Record::Commit { batch: 0 },
        untouched(1, "d0"),
        prepare(1, &["d", "e"]),
        failed(1, "e", "its own reason"),
        Record::Abort {
            batch: 1,
            reason: Some("filled up".into()),
        },
        prepare(2, &["f"]),
        Record::Abort {
            batch: 2,
            reason: None,
        },
        Record::Stopped {
            reason: "interrupted by SIGTERM".into(),
        },
    ];
    let left = held(&journal);
    assert_eq!(left.stopped.as_deref(), Some("interrupted by SIGTERM"));
    assert_eq!(left.hooks_failed, 1);
    let parts: Vec<Part> = left
        .parts(journal.iter().cloned().map(Ok))
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        parts,
        [
            Part::Committed(
                0,
                vec![change("a")],
                vec![
                    lost("b", "staging failed"),
                    lost("c", "moved away"),
                    skipped("a0")
                ]
            ),
            Part::Unchanged(
                1,
                vec![
                    lost("d", "filled up"),
                    lost("e", "its own reason"),
                    skipped("d0")
                ]
            ),
        ]
    );
    // Without its `failed` records (a journal before version 3), a committed batch's unready
    // identity fails with the replay's own reason.
    let older = [
        prepare(0, &["a", "b"]),
        ready(0, &["a"]),
        Record::Commit { batch: 0 },
    ];
    let parts: Vec<Part> = held(&older)
        .parts(older.iter().cloned().map(Ok))
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        parts,
        [Part::Committed(
            0,
            vec![change("a")],
            vec![lost("b", UNREADY)]
        )]
    );
    for (version, refusal) in [
        (VERSION + 1, "written by a later rekey (journal version 4"),
        (0, "journal version 0, which rekey never writes"),
    ] {
        let start = Record::Start {
            version,
            run_id: "r".into(),
            command: "rotate".into(),
            as_of: "t".into(),
            operator: None,
            reason: None,
        };
        let err = Left::of(Path::new("j"), [Ok(start)].into_iter())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("journal j line 1: {refusal}")),
            "{err}"
        );
    }
}
