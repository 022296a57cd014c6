//! A run's report lines as the run goes: each batch's lines are appended, in (node, service)
//! order, to an unnamed file (in the run's directory; a dry run's in the temporary directory, as
//! it writes nothing in the fleet) and counted as they pass, so that a run holds one batch of
//! lines at a time; `report.json` and the table are then assembled from that file by streaming,
//! byte for byte what the report held whole would be. A file that cannot take a line (a full
//! filesystem) is not an error: from then on the lines are held in memory, and the report is
//! still whole.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;

use super::lines::{IdentityReport, Outcome};
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
    /// The directories done among those the tally was asked to watch (left for a person
    /// before the run).
    pub(crate) cleared: BTreeSet<String>,
}

impl Tally {
    fn count(&mut self, line: &IdentityReport, watched: &BTreeSet<String>) {
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
                if watched.contains(&line.dir) {
                    self.cleared.insert(line.dir.clone());
                }
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
    pub(crate) fn of<'a>(
        lines: impl IntoIterator<Item = &'a IdentityReport>,
        watched: &BTreeSet<String>,
    ) -> Tally {
        let mut tally = Tally::default();
        for line in lines {
            tally.count(line, watched);
        }
        tally
    }
}

/// A run's report lines, in (node, service) order: appended batch by batch, read back as often
/// as the report is written or shown.
pub(crate) struct Lines {
    /// The unnamed file, or `None` once it refused a line.
    file: Option<BufWriter<File>>,
    /// Lines the file could not take, in order after those it holds.
    held: Vec<IdentityReport>,
    /// Lines decided before the run (identities refused), merged in at their place.
    refused: std::iter::Peekable<std::vec::IntoIter<IdentityReport>>,
    watched: BTreeSet<String>,
    tally: Tally,
}

impl Lines {
    /// Lines kept in an unnamed file in `dir` (a run's directory), or, with `None`, in the
    /// temporary directory (a dry run). `refused` are merged in at their place; `watched` are
    /// the directories whose being done the tally notes.
    pub(crate) fn new(
        dir: Option<&Path>,
        mut refused: Vec<IdentityReport>,
        watched: BTreeSet<String>,
    ) -> Lines {
        refused.sort_by(|a, b| (&a.node, &a.service).cmp(&(&b.node, &b.service)));
        let file = match dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        };
        Lines {
            file: file.ok().map(|f| BufWriter::with_capacity(1 << 16, f)),
            held: Vec::new(),
            refused: refused.into_iter().peekable(),
            watched,
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
        if let Some(file) = &mut self.file
            && file.flush().is_err()
        {
            // What did not reach the file is lost with it: the lines are read again from
            // the start into memory.
            self.hold_all();
        }
    }

    /// Moves every line into memory, after a write to the file failed: what the file took and
    /// what its buffer still holds are, together, every line appended so far; a last line
    /// without its newline is the one being appended, which the caller holds itself.
    fn hold_all(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let (file, buffered) = file.into_parts();
        let mut bytes = Vec::new();
        let read = (&file)
            .seek(io::SeekFrom::Start(0))
            .and_then(|_| io::Read::read_to_end(&mut &file, &mut bytes));
        if read.is_err() {
            bytes.clear();
        }
        bytes.extend_from_slice(&buffered.unwrap_or_default());
        let mut lines: Vec<IdentityReport> = bytes
            .split_inclusive(|b| *b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        lines.append(&mut self.held);
        self.held = lines;
    }

    fn put(&mut self, line: IdentityReport) {
        self.tally.count(&line, &self.watched);
        if let Some(file) = &mut self.file {
            let written = serde_json::to_writer(&mut *file, &line)
                .map_err(io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if written.is_ok() {
                return;
            }
            // A buffer the file refused may be cut anywhere: every line is held from now on.
            self.hold_all();
        }
        self.held.push(line);
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Every line, in order, read back from the start (after [`Lines::close`]).
    pub(crate) fn read(&self) -> io::Result<impl Iterator<Item = io::Result<IdentityReport>> + '_> {
        let spooled = match &self.file {
            Some(file) => Some(read_from(file.get_ref())?),
            None => None,
        };
        Ok(spooled
            .into_iter()
            .flatten()
            .chain(self.held.iter().cloned().map(Ok)))
    }

    /// Every line held in memory, read back (a command given the report whole).
    pub(crate) fn hold(&self) -> io::Result<Vec<IdentityReport>> {
        self.read()?.collect()
    }
}

/// The lines of `file`, from its start. A last line cut short (a write that failed) ends them.
fn read_from(file: &File) -> io::Result<impl Iterator<Item = io::Result<IdentityReport>> + use<>> {
    let mut f = file.try_clone()?;
    f.seek(io::SeekFrom::Start(0))?;
    Ok(BufReader::with_capacity(1 << 16, f)
        .lines()
        .map(|line| serde_json::from_str::<IdentityReport>(&line?).map_err(io::Error::from)))
}

#[cfg(test)]
mod tests;
