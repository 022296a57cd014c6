use super::*;

#[test]
fn the_exit_code_puts_this_runs_failures_before_attention_already_there() {
    let t: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
    let id = crate::names::IdentityId::new("n", "s").unwrap();
    let line = |o| IdentityReport::unchanged(&id, o, String::new());
    let needs = || {
        let person = crate::survey::Person {
            id: crate::names::IdentityId::new("n", "x").unwrap(),
            tag: crate::survey::Stuck::Problem,
            reasons: "r".into(),
            state: crate::classify::State::Problem,
            action: crate::classify::Action::Skip,
        };
        vec![person]
    };
    let failed_hook = HookResult {
        source: "reload".into(),
        status: HookStatus::TimedOut,
        exit_code: None,
        detail: String::new(),
        log: String::new(),
    };
    let done_hook_failed = || {
        let mut l = line(Outcome::Done);
        l.hooks.push(failed_hook.clone());
        l
    };
    use RunCommand::{Apply, Rotate};
    // (name, command, lines, stopped, attention, exit, outcome)
    let cases = [
        (
            "nothing to do",
            Rotate,
            vec![],
            false,
            vec![],
            0,
            RunOutcome::NothingToDo,
        ),
        (
            "all done",
            Rotate,
            vec![line(Outcome::Done)],
            false,
            vec![],
            0,
            RunOutcome::Done,
        ),
        (
            "done, attention left",
            Rotate,
            vec![line(Outcome::Done)],
            false,
            needs(),
            4,
            RunOutcome::Done,
        ),
        (
            "apply exits as rotate: done, attention left",
            Apply,
            vec![line(Outcome::Done)],
            false,
            needs(),
            4,
            RunOutcome::Done,
        ),
        (
            "attention, not a command that rotates what is due",
            RunCommand::Recover,
            vec![line(Outcome::Done)],
            false,
            needs(),
            0,
            RunOutcome::Done,
        ),
        (
            "a failure wins over attention",
            Rotate,
            vec![line(Outcome::Done), line(Outcome::Failed)],
            false,
            needs(),
            3,
            RunOutcome::Partial,
        ),
        (
            "a skip wins over attention",
            Rotate,
            vec![line(Outcome::Skipped)],
            false,
            needs(),
            3,
            RunOutcome::Failed,
        ),
        (
            "a failed hook wins over attention",
            Rotate,
            vec![done_hook_failed()],
            false,
            needs(),
            3,
            RunOutcome::Done,
        ),
        (
            "stopped with some done",
            Rotate,
            vec![line(Outcome::Done), line(Outcome::Failed)],
            true,
            needs(),
            3,
            RunOutcome::Partial,
        ),
        (
            "stopped with none done",
            Rotate,
            vec![line(Outcome::Failed)],
            true,
            needs(),
            1,
            RunOutcome::Failed,
        ),
    ];
    for (name, command, lines, stopped, attention, exit, outcome) in cases {
        let header = Header {
            run_id: "r".into(),
            dry_run: false,
            command,
            started: t,
            finished: t,
            as_of: t,
            root: "/f".into(),
            notes: Notes::default(),
            recovered_by_replay: false,
            stopped: stopped.then(|| "interrupted by SIGTERM".to_string()),
            warnings: Vec::new(),
            fleet: FleetFacts {
                policy_sha256: None,
                needs_attention: Some(Attention::new(
                    crate::aside::Aside::held(attention),
                    Vec::new(),
                )),
                keep_runs: None,
            },
            hooks_skipped: false,
            retried_hooks: Default::default(),
        };
        let report = Report::new(header, lines);
        assert_eq!(
            (report.exit_code, report.outcome),
            (exit, outcome),
            "{name}"
        );
    }
}
