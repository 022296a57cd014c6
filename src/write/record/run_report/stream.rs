//! A run's report lines as the run goes: each batch's lines are appended, in (node, service)
//! order, to an unnamed file (in the run's directory; a dry run's in the temporary directory, as
//! it writes nothing in the fleet) and counted as they pass, so that a run holds one batch of
//! lines at a time; `report.json` and the table are then assembled from that file by streaming,
//! byte for byte what the report held whole would be. A file that cannot take a line (a full
//! filesystem) is not an error: from then on the lines are held in memory, and the report is
//! still whole.

use std::io;
use std::path::Path;

use super::lines::{IdentityReport, Outcome};
use crate::aside::Aside;
use crate::scan::{CERT_FILE, TOKEN_FILE};
use crate::write::record::calls::HookStatus;

/// What the lines of a run add up to, counted as they pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) lines: usize,
    pub(crate) done: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    /// Certificates and tokens replaced by the identities done.
    pub(crate) credentials: usize,
    /// Files the identities done name (a rollback's: the files put back).
    pub(crate) files: usize,
    /// Deploy hooks that failed or timed out.
    pub(crate) hooks_failed: usize,
}

impl Tally {
    fn count(&mut self, line: &IdentityReport) {
        self.lines += 1;
        match line.outcome {
            Outcome::Done => {
                self.done += 1;
                // From the files replaced, which every line done names (a line a replay wrote
                // from the journal has no certificate or token details).
                self.credentials += line
                    .files
                    .iter()
                    .filter(|f| [CERT_FILE, TOKEN_FILE].contains(&f.name.as_str()))
                    .count();
                self.files += line.files.len();
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
        self.hooks_failed += line
            .hooks
            .iter()
            .filter(|h| h.status != HookStatus::Ok)
            .count();
    }

    /// The tally of lines held whole (`Report::new`, the tests' reference).
    #[cfg(test)]
    pub(crate) fn of<'a>(lines: impl IntoIterator<Item = &'a IdentityReport>) -> Tally {
        let mut tally = Tally::default();
        for line in lines {
            tally.count(line);
        }
        tally
    }
}

/// A run's report lines, in (node, service) order: appended batch by batch, read back as often
/// as the report is written or shown.
pub(crate) struct Lines {
    lines: Aside<IdentityReport>,
    /// Lines decided before the run (identities refused), merged in at their place.
    refused: std::iter::Peekable<std::vec::IntoIter<IdentityReport>>,
    tally: Tally,
}

impl Lines {
    /// Lines kept in an unnamed file in `dir` (a run's directory), or, with `None`, in the
    /// temporary directory (a dry run). `refused` are merged in at their place.
    pub(crate) fn new(dir: Option<&Path>, mut refused: Vec<IdentityReport>) -> Lines {
        refused.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
        Lines {
            lines: Aside::new(dir, 0),
            refused: refused.into_iter().peekable(),
            tally: Tally::default(),
        }
    }

    /// Appends one batch's lines (sorted here: a batch is a run of consecutive identities).
    pub(crate) fn batch(&mut self, mut lines: Vec<IdentityReport>) {
        lines.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
        for line in lines {
            while let Some(refused) = self
                .refused
                .next_if(|r| (&r.node, &r.service) < (&line.node, &line.service))
            {
                self.put(refused);
            }
            self.put(line);
        }
    }

    /// Appends what is left of the refused lines, after the last batch, and makes every line
    /// readable ([`Lines::read`]).
    pub(crate) fn close(&mut self) {
        while let Some(refused) = self.refused.next() {
            self.put(refused);
        }
        self.lines.flush();
    }

    fn put(&mut self, line: IdentityReport) {
        self.tally.count(&line);
        self.lines.push(line);
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Every line, in order, read back from the start (after [`Lines::close`]).
    pub(crate) fn read(&self) -> io::Result<impl Iterator<Item = io::Result<IdentityReport>> + '_> {
        Ok(self.lines.read())
    }

    /// Every line held in memory, read back (a command given the report whole).
    pub(crate) fn hold(&self) -> io::Result<Vec<IdentityReport>> {
        self.read()?.collect()
    }
}

#[cfg(test)]
mod tests;
