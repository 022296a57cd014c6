use super::*;
use crate::names::IdentityId;
use crate::write::record::entries::sample::change;

#[test]
fn dropped_and_discarded_calls_are_no_longer_pending() {
    use crate::write::record::calls::HookSource;
    let call = |n| HookCall {
        call: n,
        kind: HookKind::Post,
        id: None,
        source: HookSource::Reload,
        not_after: None,
    };
    let records = vec![
        Record::Hooks {
            batch: None,
            calls: (1..=5).map(call).collect(),
        },
        Record::Prepare {
            batch: 0,
            identities: vec![change("a")],
        },
        Record::Ready {
            batch: 0,
            identities: vec!["a/s".into()],
        },
        Record::Commit { batch: 0 },
        Record::hook_done(1, HookStatus::Ok),
        Record::hook_done(2, HookStatus::TimedOut),
        Record::HookDropped {
            call: 3,
            reason: "gone".into(),
        },
        Record::HookDiscarded {
            call: 4,
            operator: "alice".into(),
        },
    ];
    let left: Vec<(u32, Option<HookStatus>)> = pending_hooks(&records)
        .into_iter()
        .map(|p| (p.call.call, p.last))
        .collect();
    assert_eq!(left, [(2, Some(HookStatus::TimedOut)), (5, None)]);
}

#[test]
fn post_calls_are_pending_once_the_run_committed_something_and_come_after_deploy_calls() {
    use crate::write::record::calls::HookSource;
    let post = HookCall {
        call: 1,
        kind: HookKind::Post,
        id: None,
        source: HookSource::Reload,
        not_after: None,
    };
    let deploy = |n, node| HookCall {
        call: n,
        kind: HookKind::Deploy,
        id: IdentityId::new(node, "s"),
        source: HookSource::Reload,
        not_after: None,
    };
    // A run journals its post calls as it starts, then each batch's deploy calls.
    let mut records = vec![
        Record::Hooks {
            batch: None,
            calls: vec![post],
        },
        Record::Prepare {
            batch: 0,
            identities: vec![change("a"), change("b")],
        },
        Record::Hooks {
            batch: Some(0),
            calls: vec![deploy(2, "a"), deploy(3, "b")],
        },
    ];
    let left = |records: &[Record]| -> Vec<u32> {
        pending_hooks(records).iter().map(|p| p.call.call).collect()
    };
    assert_eq!(
        left(&records),
        [0u32; 0],
        "cut off before it changed anything"
    );
    records.push(Record::Ready {
        batch: 0,
        identities: vec!["a/s".into(), "b/s".into()],
    });
    records.push(Record::Commit { batch: 0 });
    assert_eq!(
        left(&records),
        [2, 3, 1],
        "its deploy calls, then its post call"
    );
    records.push(Record::hook_done(2, HookStatus::Ok));
    assert_eq!(
        left(&records),
        [3, 1],
        "each call's end closes that call alone"
    );
}

/// Read a batch at a time: a batch cut off before its `ready` placed nothing, a batch whose
/// `commit` a replay appended long after placed its ready identities only, a call that failed
/// and then ran is closed, and a call number no run writes is read like any other.
#[test]
fn each_batch_places_only_its_ready_identities_once_committed() {
    use crate::write::record::calls::HookSource;
    let deploy = |n, node| HookCall {
        call: n,
        kind: HookKind::Deploy,
        id: IdentityId::new(node, "s"),
        source: HookSource::Reload,
        not_after: None,
    };
    let batch = |b: u32, nodes: &[&str], calls: Vec<HookCall>, ready: &[&str]| {
        let mut r = vec![
            Record::Prepare {
                batch: b,
                identities: nodes.iter().map(|n| change(n)).collect(),
            },
            Record::Hooks {
                batch: Some(b),
                calls,
            },
        ];
        if !ready.is_empty() {
            r.push(Record::Ready {
                batch: b,
                identities: ready.iter().map(|n| format!("{n}/s")).collect(),
            });
        }
        r
    };
    let mut records = Vec::new();
    records.extend(batch(
        0,
        &["a", "b"],
        vec![deploy(1, "a"), deploy(2, "b")],
        &["a", "b"],
    ));
    records.push(Record::Commit { batch: 0 });
    // Batch 1: `b` again in a deploy call of another batch, which placed nothing.
    records.extend(batch(
        1,
        &["c"],
        vec![deploy(3, "c"), deploy(4, "b")],
        &["c"],
    ));
    records.push(Record::Commit { batch: 1 });
    // Batch 2: cut off before `ready`.
    records.extend(batch(2, &["d"], vec![deploy(5, "d")], &[]));
    // Batch 3: ready for `e` only, committed by a replay at the end.
    records.extend(batch(
        3,
        &["e", "f"],
        vec![deploy(6, "e"), deploy(7, "f")],
        &["e"],
    ));
    records.push(Record::hook_done(1, HookStatus::Failed));
    records.push(Record::hook_done(1, HookStatus::Ok));
    records.push(Record::hook_done(3, HookStatus::TimedOut));
    records.push(Record::hook_done(u32::MAX, HookStatus::Failed));
    records.push(Record::Commit { batch: 3 });
    let left: Vec<(u32, Option<HookStatus>)> = pending_hooks(&records)
        .into_iter()
        .map(|p| (p.call.call, p.last))
        .collect();
    assert_eq!(
        left,
        [(2, None), (3, Some(HookStatus::TimedOut)), (6, None)]
    );
}
