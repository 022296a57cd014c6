use super::*;
use crate::aside::Aside;
use crate::classify::{Action, State};
use crate::names::IdentityId;
use crate::survey::{Person, Stuck};
use crate::write::record::run_report::{
    Attention, FleetFacts, Header, NeedsPerson, Notes, Report, RetriedHook, RetriedHooks,
    RunCommand,
};

fn header() -> Header {
    header_with(FleetFacts::default())
}

fn header_with(fleet: FleetFacts) -> Header {
    let t = "2026-11-28T00:00:00Z".parse().unwrap();
    Header {
        run_id: "r".into(),
        dry_run: false,
        command: RunCommand::Apply,
        started: t,
        finished: t,
        as_of: t,
        root: "/f".into(),
        notes: Notes::default(),
        recovered_by_replay: false,
        stopped: None,
        warnings: vec!["\"identities\": []".into()],
        fleet,
        hooks_skipped: false,
        retried_hooks: Default::default(),
    }
}

fn line(n: usize, outcome: Outcome) -> IdentityReport {
    let id = IdentityId::new(&format!("node-{:03}", n / 10), &format!("svc-{n}")).unwrap();
    match outcome {
        Outcome::Done => IdentityReport::done(&id, Vec::new(), Default::default()),
        o => IdentityReport::unchanged(&id, o, format!("why {n}\nwith a newline")),
    }
}

/// Lines streamed batch by batch (each batch shuffled, the refused merged in at their place)
/// make the report, its JSON and its table, that the same lines held whole make.
#[test]
fn lines_streamed_make_the_report_held_whole() {
    let outcome = |n: usize| match n % 7 {
        0 => Outcome::Failed,
        3 => Outcome::Skipped,
        _ => Outcome::Done,
    };
    for total in [0, 1, 5, 300] {
        let all: Vec<IdentityReport> = (0..total).map(|n| line(n, outcome(n))).collect();
        let held = Report::new(header(), all.clone());
        // Every 11th identity refused before the run; the rest in batches of 64, reversed.
        let refused: Vec<IdentityReport> = all.iter().step_by(11).cloned().collect();
        let work: Vec<IdentityReport> = all
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 11 != 0)
            .map(|(_, l)| l.clone())
            .collect();
        let mut lines = Lines::new(None, refused);
        for batch in work.chunks(64) {
            lines.batch(batch.iter().rev().cloned().collect());
        }
        lines.close();
        let streamed = Report::of(
            header(),
            lines.tally(),
            Vec::new(),
            lines.read().unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(streamed.counts, held.counts, "{total}: counts");
        assert_eq!(streamed.outcome, held.outcome, "{total}: outcome");
        let mut json = Vec::new();
        streamed
            .write_json(lines.read().unwrap(), &mut json)
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            held.to_json(),
            "{total}: json"
        );
        let (mut table, mut whole) = (Vec::new(), Vec::new());
        streamed.write_summary(|| lines.read(), &mut table).unwrap();
        held.write_summary(|| Ok(std::iter::empty()), &mut whole)
            .unwrap();
        // The table aligned as a whole, its widest cells anywhere (measured in a first pass).
        let mut rows = vec![
            ["NODE", "SERVICE", "OUTCOME", "REASON"]
                .map(String::from)
                .to_vec(),
        ];
        for l in all.iter().filter(|l| l.outcome != Outcome::Done) {
            let outcome = if l.outcome == Outcome::Failed {
                "failed"
            } else {
                "skipped"
            };
            rows.push(vec![
                l.node.clone(),
                l.service.clone(),
                outcome.into(),
                l.reason.clone(),
            ]);
        }
        if rows.len() > 1 {
            let aligned = crate::report::align(&rows);
            let shown = String::from_utf8(table.clone()).unwrap();
            assert!(shown.contains(&aligned), "{total}: aligned\n{shown}");
        }
        assert_eq!(table, whole, "{total}: table");
        assert_eq!(lines.hold().unwrap(), held.identities, "{total}: held");
    }
}

fn person(node: &str, service: &str, tag: Stuck) -> Person {
    Person {
        id: IdentityId::new(node, service).unwrap(),
        tag,
        reasons: format!("{node}/{service} needs a person,\nsays \"this\""),
        state: State::Recover,
        action: Action::Recover,
    }
}

/// What a run leaves for a person is what its survey set aside less what the run did, then the
/// fleet issues: met with the lines by merge, set aside again, and written into the JSON after
/// the identities, byte for byte the report holding it whole; counted by kind. Past a thousand
/// entries both lists are in files.
#[test]
fn what_is_left_for_a_person_is_set_aside_and_written_as_held() {
    let outcome = |n: usize| match n % 5 {
        0 => Outcome::Failed,
        _ => Outcome::Done,
    };
    for (total, extra) in [(0, 0), (10, 3), (300, 1500)] {
        let all: Vec<IdentityReport> = (0..total).map(|n| line(n, outcome(n))).collect();
        // Every third identity of the run needed a person before it (it clears when done), and
        // `extra` more the run never touched (after every line, and between them).
        let mut people: Vec<Person> = (0..total)
            .step_by(3)
            .map(|n| {
                let tag = if n % 2 == 0 {
                    Stuck::Recover
                } else {
                    Stuck::Problem
                };
                person(&format!("node-{:03}", n / 10), &format!("svc-{n}"), tag)
            })
            .chain((0..extra).map(|k| person("node-999", &format!("x-{k:05}"), Stuck::Recover)))
            .chain(
                (0..extra.min(2)).map(|k| person("node-000", &format!("svc-0{k}"), Stuck::Problem)),
            )
            .collect();
        people.sort_by(|a, b| a.id.cmp(&b.id));
        let issues = vec![NeedsPerson {
            dir: "nodes/stray-file".into(),
            state: Stuck::Problem,
            reason: "is a file, not a node".into(),
            fleet_issue: true,
        }];
        let mut spilled = Aside::new(None, 8);
        for p in &people {
            spilled.push(p.clone());
        }
        spilled.flush();
        let facts = |people| FleetFacts {
            policy_sha256: None,
            needs_attention: Some(Attention::new(people, issues.clone())),
            keep_runs: None,
        };
        let mut lines = Lines::new(None, Vec::new());
        for batch in all.chunks(64) {
            lines.batch(batch.to_vec());
        }
        lines.close();
        let header = header_with(facts(spilled));
        let streamed = Report::of(
            header,
            lines.tally(),
            Vec::new(),
            lines.read().unwrap(),
            None,
        )
        .unwrap();
        // Independently: each person whose line is not done, in order, then the issue.
        let done: std::collections::BTreeSet<&str> = all
            .iter()
            .filter(|l| l.outcome == Outcome::Done)
            .map(|l| l.dir.as_str())
            .collect();
        let left: Vec<NeedsPerson> = people
            .iter()
            .map(|p| NeedsPerson {
                dir: p.id.relative().to_string_lossy().into_owned(),
                state: p.tag,
                reason: p.reasons.clone(),
                fleet_issue: false,
            })
            .filter(|a| !done.contains(a.dir.as_str()))
            .chain(issues.clone())
            .collect();
        let count = |state, fleet_issue| {
            left.iter()
                .filter(|a| a.state == state && a.fleet_issue == fleet_issue)
                .count()
        };
        assert_eq!(
            streamed.counts.needs_recover,
            Some(count(Stuck::Recover, false))
        );
        assert_eq!(streamed.counts.problems, Some(count(Stuck::Problem, false)));
        assert_eq!(streamed.counts.fleet_issues, Some(1));
        let mut held = Report::new(header_with(facts(Aside::held(people.clone()))), all.clone());
        held.left = None;
        held.needs_attention = left.clone();
        let mut json = Vec::new();
        streamed
            .write_json(lines.read().unwrap(), &mut json)
            .unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json, held.to_json(), "{total}: json");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.needs_attention, left, "{total}: read back");
        let filed = format!("{:?}", streamed.left).contains("filed: true");
        assert_eq!(filed, left.len() > 1024, "{total}: filed");
    }
}

/// The hooks of earlier runs a run ran first are set aside as they run (past 256, in a file),
/// written into the JSON in their place (before `post_hooks`, else before `counts`), byte for
/// byte the report holding them whole, counted (those that failed) and each failed one named in
/// the table.
#[test]
fn hooks_run_again_are_set_aside_and_written_as_held() {
    use crate::write::record::calls::{HookResult, HookStatus};
    let hook = |n: usize| RetriedHook {
        run_id: format!("run-{}", n / 100),
        dir: (n % 10 != 9).then(|| format!("nodes/node-000/svc-{n}")),
        result: HookResult {
            source: "--deploy-hook".into(),
            status: if n.is_multiple_of(4) {
                HookStatus::Failed
            } else {
                HookStatus::Ok
            },
            exit_code: Some(i32::from(n.is_multiple_of(4))),
            detail: String::new(),
            log: format!(".rekey/runs/r/hooks/{n}.log"),
        },
    };
    for (total, post) in [(1, false), (3, true), (300, false), (300, true)] {
        let mut retried = RetriedHooks::default();
        for n in 0..total {
            retried.push(hook(n));
        }
        retried.close();
        let mut header = header();
        header.retried_hooks = retried;
        let mut lines = Lines::new(None, Vec::new());
        lines.batch((0..5).map(|n| line(n, Outcome::Done)).collect());
        lines.close();
        let mut streamed = Report::of(
            header,
            lines.tally(),
            Vec::new(),
            lines.read().unwrap(),
            None,
        )
        .unwrap();
        if post {
            streamed.with_post_hooks(vec![hook(0).result]);
        }
        let failed = (0..total).filter(|n| n.is_multiple_of(4)).count() + usize::from(post);
        assert_eq!(streamed.counts.hooks_failed, failed, "{total}");
        let mut held = streamed.clone();
        held.retried = None;
        held.retried_hooks = (0..total).map(hook).collect();
        held.identities = lines.hold().unwrap();
        let mut json = Vec::new();
        streamed
            .write_json(lines.read().unwrap(), &mut json)
            .unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json, held.to_json(), "{total}, post hooks: {post}");
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["retried_hooks"].as_array().unwrap().len(), total);
        let mut table = Vec::new();
        streamed.write_summary(|| lines.read(), &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert_eq!(table.matches("hook failed: ").count(), failed, "{table}");
    }
}
