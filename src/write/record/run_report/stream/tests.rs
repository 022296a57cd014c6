use super::*;
use crate::names::IdentityId;
use crate::write::record::run_report::{FleetFacts, Header, Notes, Report, RunCommand};

fn header() -> Header {
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
        fleet: FleetFacts::default(),
        hooks_skipped: false,
        retried_hooks: Vec::new(),
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
        let mut lines = Lines::new(None, refused, Default::default());
        for batch in work.chunks(64) {
            lines.batch(batch.iter().rev().cloned().collect());
        }
        lines.close();
        let streamed = Report::of(header(), lines.tally(), Vec::new());
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
