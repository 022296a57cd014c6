//! What a run leaves for a person: the identities its survey found needing `recover` or with a
//! problem (set aside as the survey found them), less those the run itself did, then the fleet
//! issues that are problems. Met with the run's lines by merge (both in (node, service) order)
//! and set aside again, so that after a missed window (the fleet needs a person) a run holds
//! none of it.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::{IdentityReport, NeedsPerson, Outcome};
use crate::aside::Aside;
use crate::survey::{Person, Stuck};

/// Entries of what is left held before they are set aside in a file.
const HELD: usize = 1024;

/// What a run found left for a person before it acted.
#[derive(Debug)]
pub(crate) struct Attention {
    people: Aside<Person>,
    issues: Vec<NeedsPerson>,
}

/// What is left for a person after a run, counted and set aside.
#[derive(Debug, Clone)]
pub(crate) struct Left {
    pub(crate) list: Arc<Aside<NeedsPerson>>,
    pub(crate) needs_recover: usize,
    pub(crate) problems: usize,
    pub(crate) fleet_issues: usize,
}

impl NeedsPerson {
    fn of(p: Person) -> NeedsPerson {
        NeedsPerson {
            dir: p.id.relative().to_string_lossy().into_owned(),
            state: p.tag,
            reason: p.reasons,
            fleet_issue: false,
        }
    }
}

impl Attention {
    /// The identities that need a person, in (node, service) order, then the fleet issues that
    /// are problems.
    pub(crate) fn new(people: Aside<Person>, issues: Vec<NeedsPerson>) -> Attention {
        Attention { people, issues }
    }

    /// What is left once the run whose lines are `lines` (every one, in order) is over: an
    /// identity it did (a recovered one) is no longer left. Set aside in `dir` (else in
    /// `TMPDIR`) past the first few.
    pub(crate) fn left(
        &self,
        lines: impl Iterator<Item = io::Result<IdentityReport>>,
        dir: Option<&Path>,
    ) -> io::Result<Left> {
        let mut lines = lines.peekable();
        let mut list = Aside::new(dir, HELD);
        let (mut needs_recover, mut problems) = (0, 0);
        for person in self.people.read() {
            let person = person?;
            let at = (person.id.node(), person.id.service());
            let mut done = false;
            while let Some(line) = lines.next_if(|l| {
                l.as_ref()
                    .map_or(true, |l| (l.node.as_str(), l.service.as_str()) <= at)
            }) {
                let line = line?;
                done = (line.node.as_str(), line.service.as_str()) == at
                    && line.outcome == Outcome::Done;
            }
            if done {
                continue;
            }
            match person.tag {
                Stuck::Recover => needs_recover += 1,
                Stuck::Problem => problems += 1,
            }
            list.push(NeedsPerson::of(person));
        }
        let fleet_issues = self.issues.len();
        for issue in &self.issues {
            list.push(issue.clone());
        }
        list.flush();
        Ok(Left {
            list: Arc::new(list),
            needs_recover,
            problems,
            fleet_issues,
        })
    }
}
