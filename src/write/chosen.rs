//! The identities a first pass over the fleet chose, set aside in an unnamed temporary file in
//! (node, service) order, for the second pass to meet by merge and the audit to list: what a run
//! that reads the fleet twice carries between its passes without holding it (`recover`'s).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result, bail};

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

    /// Which identities of a second pass over the fleet (in the same order) were chosen.
    pub(crate) fn pick(&self) -> Pick<'_> {
        Pick {
            each: Box::new(self.each()),
            next: None,
            ended: false,
            failed: None,
        }
    }
}

/// Meets the identities of a second pass with those chosen, by merge.
pub(crate) struct Pick<'a> {
    each: Box<dyn Iterator<Item = Result<IdentityId>> + 'a>,
    next: Option<IdentityId>,
    /// Every identity chosen was read.
    ended: bool,
    failed: Option<anyhow::Error>,
}

impl Pick<'_> {
    /// Whether `id` was chosen; identities must come in (node, service) order. After a read
    /// error nothing more is chosen: [`Pick::failed`] says so, and [`Pick::end`] why.
    pub(crate) fn takes(&mut self, id: &IdentityId) -> bool {
        while !self.ended
            && self.failed.is_none()
            && self.next.as_ref().is_none_or(|next| next < id)
        {
            match self.each.next() {
                Some(Ok(next)) => self.next = Some(next),
                Some(Err(e)) => self.failed = Some(e),
                None => self.ended = true,
            }
        }
        self.failed.is_none() && self.next.as_ref() == Some(id)
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

/// Reads a file from `at` on with `pread`, never moving the file's own offset: readers of one
/// file never disturb each other.
struct At<'a> {
    file: &'a File,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
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
        let mut picked: Vec<IdentityId> = first.iter().filter(|i| pick.takes(i)).cloned().collect();
        // A second reader while the first is halfway.
        let read: Vec<IdentityId> = chosen.each().map(Result::unwrap).collect();
        assert_eq!(read, expected);
        picked.extend(rest.iter().filter(|i| pick.takes(i)).cloned());
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
        assert!(!chosen.pick().takes(&id("a", "b")));
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
            assert!(pick.takes(&id("a", "b")));
            assert!(!pick.takes(&id("z", "z")), "nothing after the damage");
            assert!(pick.failed());
            assert!(pick.end().is_err());
        }
    }
}
