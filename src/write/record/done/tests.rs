use super::*;
use crate::store::Store;
use crate::write::record::run_report::{FleetFacts, Header, Notes, Report, RunCommand};

fn header() -> Header {
    let t = "2026-11-28T00:00:00Z".parse().unwrap();
    Header {
        run_id: "r".into(),
        dry_run: false,
        command: RunCommand::Rotate,
        started: t,
        finished: t,
        as_of: t,
        root: "/f".into(),
        notes: Notes::default(),
        recovered_by_replay: false,
        stopped: None,
        warnings: vec!["a warning with \"identities\": [ in it\n  ]".into()],
        fleet: FleetFacts::default(),
        hooks_skipped: false,
        retried_hooks: Default::default(),
    }
}

fn line(node: &str, service: &str, outcome: Outcome) -> IdentityReport {
    let id = IdentityId::new(node, service).unwrap();
    match outcome {
        Outcome::Done => IdentityReport::done(&id, Vec::new(), Default::default()),
        o => IdentityReport::unchanged(&id, o, "why".into()),
    }
}

fn all(run: &RunDir) -> Result<Vec<String>> {
    let mut done = Done::open(run)?.expect("a report");
    let mut ids = Vec::new();
    while let Some(id) = done.next_done()? {
        ids.push(id.to_string());
    }
    Ok(ids)
}

#[test]
fn a_reports_done_identities_are_read_in_order_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::of(dir.path());
    let run = store.create_run(chrono::Utc::now()).unwrap();
    assert!(Done::open(&run).unwrap().is_none(), "no report: nothing");
    let lines = vec![
        line("n2", "a", Outcome::Done),
        line("n1", "b", Outcome::Failed),
        line("n1", "a", Outcome::Done),
        line("n1", "c", Outcome::Skipped),
    ];
    let text = Report::new(header(), lines).to_json();
    let empty = Report::new(header(), Vec::new()).to_json();
    let cases: [(&str, String, Option<Vec<&str>>); 5] = [
        (
            "as rekey writes it",
            text.clone(),
            Some(vec!["n1/a", "n2/a"]),
        ),
        ("no identities", empty, Some(vec![])),
        ("compact", text.replace("\n", ""), None),
        ("out of order", text.replacen("\"n1\"", "\"n3\"", 1), None),
        ("cut short", text[..text.len() / 2].to_string(), None),
    ];
    for (name, text, want) in cases {
        std::fs::write(run.report(), &text).unwrap();
        let got = all(&run).ok();
        let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, want, "{name}");
    }
}
