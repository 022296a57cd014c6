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
    pub(crate) fn new() -> Result<Choosing> {
        Ok(Choosing {
            spool: Spool::new()?,
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

    /// Every identity chosen, in order, from the first.
    pub(crate) fn each(&self) -> impl Iterator<Item = Result<IdentityId>> + '_ {
        let reader = BufReader::with_capacity(
            1 << 16,
            At {
                file: &self.file,
                at: 0,
            },
        );
        reader.lines().map(|line| {
            let line = line.context("failed to read back the identities chosen")?;
            line.split_once('/')
                .and_then(|(node, service)| IdentityId::new(node, service))
                .with_context(|| format!("the identities chosen were damaged at {line:?}"))
        })
    }

    /// Which identities of a second pass over the fleet (in the same order) were chosen.
    pub(crate) fn pick(&self) -> Pick<'_> {
        Pick {
            each: Box::new(self.each()),
            next: None,
            failed: None,
        }
    }
}

/// Meets the identities of a second pass with those chosen, by merge.
pub(crate) struct Pick<'a> {
    each: Box<dyn Iterator<Item = Result<IdentityId>> + 'a>,
    next: Option<IdentityId>,
    failed: Option<anyhow::Error>,
}

impl Pick<'_> {
    /// Whether `id` was chosen; identities must come in (node, service) order. After a read
    /// error nothing more is chosen, and [`Pick::end`] says why.
    pub(crate) fn takes(&mut self, id: &IdentityId) -> bool {
        while self.failed.is_none() && self.next.as_ref().is_none_or(|next| next < id) {
            match self.each.next() {
                Some(Ok(next)) => self.next = Some(next),
                Some(Err(e)) => self.failed = Some(e),
                None => return false,
            }
        }
        self.failed.is_none() && self.next.as_ref() == Some(id)
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

    /// Chosen identities read back whole twice, and met by merge with a second pass that lists
    /// more identities than were chosen; an identity out of order is refused.
    #[test]
    fn chosen_identities_are_read_back_and_met_by_merge() {
        let all: Vec<IdentityId> = (0..2000)
            .map(|n| id(&format!("n{:02}", n / 100), &format!("s{:03}", n % 100)))
            .collect();
        let mut choosing = Choosing::new().unwrap();
        for i in all.iter().step_by(7) {
            choosing.push(i).unwrap();
        }
        assert!(choosing.push(&all[0]).is_err(), "out of order");
        let chosen = choosing.done().unwrap();
        let expected: Vec<IdentityId> = all.iter().step_by(7).cloned().collect();
        assert_eq!(chosen.len(), expected.len());
        let mut pick = chosen.pick();
        // A second reader while the first is under way.
        let read: Vec<IdentityId> = chosen.each().map(Result::unwrap).collect();
        assert_eq!(read, expected);
        let picked: Vec<IdentityId> = all.iter().filter(|i| pick.takes(i)).cloned().collect();
        pick.end().unwrap();
        assert_eq!(picked, expected);
        let read: Vec<IdentityId> = chosen.each().map(Result::unwrap).collect();
        assert_eq!(read, expected, "read again");
    }

    #[test]
    fn nothing_chosen_picks_nothing() {
        let chosen = Choosing::new().unwrap().done().unwrap();
        assert!(chosen.is_empty());
        assert!(!chosen.pick().takes(&id("a", "b")));
    }
}
