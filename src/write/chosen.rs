//! The identities a first pass over the fleet chose, set aside in an unnamed temporary file in
//! (node, service) order, for the second pass to meet by merge and the audit to list: what a run
//! that reads the fleet twice carries between its passes without holding it (`recover`'s).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, Result, bail};

use crate::aside::At;
use crate::names::IdentityId;
use crate::out::Spool;

/// Identities set aside as they are chosen; each must come after the one before (the survey's
/// order), which is what lets [`Chosen::pick`] meet them by merge.
pub(crate) struct Choosing {
    spool: Spool,
    last: Option<IdentityId>,
    count: usize,
}

impl Choosing {
    /// Identities set aside in `dir` (a run's: the fleet's `.rekey/`, which only root can
    /// change, since they decide what root writes), else in `TMPDIR` (a dry run's, which only
    /// shape what it prints).
    pub(crate) fn new(dir: Option<&std::path::Path>) -> Result<Choosing> {
        let spool = match dir {
            Some(dir) => Spool::new_in(dir)?,
            None => Spool::new()?,
        };
        Ok(Choosing {
            spool,
            last: None,
            count: 0,
        })
    }

    pub(crate) fn push(&mut self, id: &IdentityId) -> Result<()> {
        if self.last.as_ref().is_some_and(|last| last >= id) {
            bail!("the fleet was not listed in (node, service) order at {id}");
        }
        writeln!(self.spool.writer(), "{id}")?;
        self.last = Some(id.clone());
        self.count += 1;
        Ok(())
    }

    pub(crate) fn done(self) -> Result<Chosen> {
        Ok(Chosen {
            file: self.spool.into_file()?,
            count: self.count,
        })
    }
}

/// The identities chosen, read back as often as needed, each reader on its own.
pub(crate) struct Chosen {
    file: File,
    count: usize,
}

impl Chosen {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every identity chosen, in order, from the first. What is read back is checked to be what
    /// was set aside: names in strictly increasing order, as many as were chosen; anything else
    /// is an error, after which nothing more is given.
    pub(crate) fn each(&self) -> impl Iterator<Item = Result<IdentityId>> + '_ {
        let reader = BufReader::with_capacity(
            1 << 16,
            At {
                file: &self.file,
                at: 0,
            },
        );
        let mut lines = reader.lines();
        let (mut last, mut read, mut over) = (None::<IdentityId>, 0usize, false);
        std::iter::from_fn(move || {
            if over {
                return None;
            }
            let checked = match lines.next() {
                None if read == self.count => return None,
                None => Err(anyhow::anyhow!(
                    "the identities chosen were damaged: {read} read back of {}",
                    self.count
                )),
                Some(line) => line
                    .context("failed to read back the identities chosen")
                    .and_then(|line| {
                        line.split_once('/')
                            .and_then(|(node, service)| IdentityId::new(node, service))
                            .filter(|id| last.as_ref().is_none_or(|last| last < id))
                            .with_context(|| {
                                format!("the identities chosen were damaged at {line:?}")
                            })
                    }),
            };
            match &checked {
                Ok(id) => {
                    last = Some(id.clone());
                    read += 1;
                }
                Err(_) => over = true,
            }
            Some(checked)
        })
    }

    /// Which identities of a second pass over the fleet (in the same order) were chosen, and
    /// which chosen ones it no longer has.
    pub(crate) fn pick(&self) -> Pick<'_> {
        Pick {
            each: Box::new(self.each()),
            next: None,
            met: false,
            ended: false,
            failed: None,
        }
    }
}

/// Meets the identities of a second pass with those chosen, by merge.
pub(crate) struct Pick<'a> {
    each: Box<dyn Iterator<Item = Result<IdentityId>> + 'a>,
    /// The chosen identity the merge stands at.
    next: Option<IdentityId>,
    /// Whether the second pass had it.
    met: bool,
    /// Every identity chosen was read.
    ended: bool,
    failed: Option<anyhow::Error>,
}

/// What a second pass's identity is to the choice.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Met {
    /// It was chosen.
    Chosen,
    /// It was not; nothing chosen before it is missing.
    NotChosen,
    /// A chosen identity that comes before it is not in the second pass (gone since it was
    /// chosen): meet the same identity again for the next.
    Missing(IdentityId),
}

impl Pick<'_> {
    /// Meets `id`; identities must come in (node, service) order. After a read error nothing
    /// more is chosen: [`Pick::failed`] says so, and [`Pick::end`] why.
    pub(crate) fn meet(&mut self, id: &IdentityId) -> Met {
        loop {
            if self.ended || self.failed.is_some() {
                return Met::NotChosen;
            }
            match &self.next {
                Some(next) if next == id => {
                    self.met = true;
                    return Met::Chosen;
                }
                Some(next) if next > id => return Met::NotChosen,
                _ => {}
            }
            if let Some(missing) = self.advance() {
                return Met::Missing(missing);
            }
        }
    }

    /// After the second pass's last identity: the next chosen identity it never had.
    pub(crate) fn next_missing(&mut self) -> Option<IdentityId> {
        while !self.ended && self.failed.is_none() {
            if let Some(missing) = self.advance() {
                return Some(missing);
            }
        }
        None
    }

    /// Moves the merge to the next chosen identity; the one it leaves when the second pass
    /// never had it.
    fn advance(&mut self) -> Option<IdentityId> {
        let left = self.next.take().filter(|_| !self.met);
        self.met = false;
        match self.each.next() {
            Some(Ok(next)) => self.next = Some(next),
            Some(Err(e)) => self.failed = Some(e),
            None => self.ended = true,
        }
        left
    }

    /// Whether reading the identities chosen back failed (the run must stop there).
    pub(crate) fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The error that stopped the picking, if one did.
    pub(crate) fn end(self) -> Result<()> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(node: &str, service: &str) -> IdentityId {
        IdentityId::new(node, service).unwrap()
    }

    /// Chosen identities read back whole twice, one reader while the other is halfway, and met
    /// by merge with a second pass that lists more identities than were chosen; an identity out
    /// of order is refused.
    #[test]
    fn chosen_identities_are_read_back_and_met_by_merge() {
        let all: Vec<IdentityId> = (0..40_000)
            .map(|n| {
                id(
                    &format!("node-{:04}", n / 100),
                    &format!("service-{:03}", n % 100),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut choosing = Choosing::new(Some(dir.path())).unwrap();
        for i in all.iter().step_by(7) {
            choosing.push(i).unwrap();
        }
        assert!(choosing.push(&all[0]).is_err(), "out of order");
        let chosen = choosing.done().unwrap();
        let expected: Vec<IdentityId> = all.iter().step_by(7).cloned().collect();
        assert_eq!(chosen.len(), expected.len());
        assert!(
            chosen.file.metadata().unwrap().len() > 1 << 16,
            "more than one buffer"
        );
        let mut pick = chosen.pick();
        let (first, rest) = all.split_at(all.len() / 2);
        let mut taken = |i: &&IdentityId| pick.meet(i) == Met::Chosen;
        let mut picked: Vec<IdentityId> = first.iter().filter(&mut taken).cloned().collect();
        // A second reader while the first is halfway.
        let read: Vec<IdentityId> = chosen.each().map(Result::unwrap).collect();
        assert_eq!(read, expected);
        picked.extend(rest.iter().filter(&mut taken).cloned());
        assert_eq!(pick.next_missing(), None);
        assert!(!pick.failed());
        pick.end().unwrap();
        assert_eq!(picked, expected);
        let read: Vec<IdentityId> = chosen.each().map(Result::unwrap).collect();
        assert_eq!(read, expected, "read again");
    }

    #[test]
    fn nothing_chosen_picks_nothing() {
        let chosen = Choosing::new(None).unwrap().done().unwrap();
        assert!(chosen.is_empty());
        let mut pick = chosen.pick();
        assert_eq!(pick.meet(&id("a", "b")), Met::NotChosen);
        assert_eq!(pick.next_missing(), None);
    }

    /// A chosen identity the second pass does not have is said missing, once, before the
    /// pass's next identity is met (which is then met again) or after its last.
    #[test]
    fn chosen_identities_the_second_pass_lacks_are_missing_in_order() {
        let mut choosing = Choosing::new(None).unwrap();
        for (n, s) in [("a", "1"), ("a", "3"), ("b", "2"), ("c", "9"), ("d", "1")] {
            choosing.push(&id(n, s)).unwrap();
        }
        let chosen = choosing.done().unwrap();
        let mut pick = chosen.pick();
        let mut met = Vec::new();
        for (n, s) in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("c", "1")] {
            loop {
                let m = pick.meet(&id(n, s));
                let again = matches!(m, Met::Missing(_));
                met.push(m);
                if !again {
                    break;
                }
            }
        }
        let missing = std::iter::from_fn(|| pick.next_missing()).map(Met::Missing);
        met.extend(missing);
        assert_eq!(
            met,
            [
                Met::Chosen,
                Met::NotChosen,
                Met::Missing(id("a", "3")),
                Met::NotChosen,
                Met::Chosen,
                Met::NotChosen,
                Met::Missing(id("c", "9")),
                Met::Missing(id("d", "1")),
            ]
        );
        pick.end().unwrap();
    }

    /// What is read back must be what was set aside: a name that does not parse, names out of
    /// order, or fewer names than were chosen stop the reading with an error, and the picking
    /// takes nothing after it.
    #[test]
    fn a_damaged_list_is_an_error_never_a_different_choice() {
        let cases: [(&[u8], &str); 3] = [
            (b"a/b\nnot a name\nc/d\n", "damaged at"),
            (b"a/b\nc/d\nb/a\n", "damaged at"),
            (b"a/b\n", "1 read back of 3"),
        ];
        for (text, why) in cases {
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, text).unwrap();
            let chosen = Chosen { file, count: 3 };
            let read: Vec<Result<IdentityId>> = chosen.each().collect();
            let err = read.last().unwrap().as_ref().unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert!(read[..read.len() - 1].iter().all(Result::is_ok));
            let mut pick = chosen.pick();
            assert_eq!(pick.meet(&id("a", "b")), Met::Chosen);
            // What was read whole before the damage may be missing; nothing after it is chosen.
            let after = std::iter::repeat_with(|| pick.meet(&id("z", "z")))
                .find(|m| !matches!(m, Met::Missing(_)));
            assert_eq!(after, Some(Met::NotChosen), "nothing after the damage");
            assert_eq!(pick.next_missing(), None);
            assert!(pick.failed());
            assert!(pick.end().is_err());
        }
    }
}
