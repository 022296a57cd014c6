//! The identities a saved `report.json` says its run replaced, read a line at a time from the
//! layout `Report::to_json` writes (pretty, its identities one object each at a fixed depth), so
//! that reading every run's history holds one identity per run, never a whole report. Anything
//! else (a report written by hand, compact, out of order) is an error the caller answers by
//! reading the reports whole.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::run_report::{Counts, IdentityReport, Outcome};
use crate::names::IdentityId;
use crate::store::RunDir;

/// The top-level key of the identities as `Report::to_json` writes it.
const KEY: &str = "  \"identities\": [";
/// An identity object's first and last lines, one level into the array.
const OPEN: &str = "    {";
const CLOSE: &str = "    }";
/// The top-level key of the counts, whose object ends at `  }`.
const COUNTS: &str = "  \"counts\": {";
/// The array's end.
const END: &str = "  ]";

/// A saved report's done identities, in its order ((node, service), strictly increasing).
pub(crate) struct Done {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    /// The last identity read (done or not): the next must come after it.
    last: Option<(String, String)>,
    ended: bool,
}

impl Done {
    /// The done identities of `run`'s report; `None` when it has no report that can be opened
    /// (as a report that cannot be read counts nothing in the history).
    pub(crate) fn open(run: &RunDir) -> Result<Option<Done>> {
        let path = run.report();
        let Ok(file) = File::open(&path) else {
            return Ok(None);
        };
        let mut lines = BufReader::with_capacity(1 << 16, file).lines();
        loop {
            let Some(line) = lines.next() else {
                bail!("{}: no identities where rekey writes them", path.display());
            };
            let line = line.with_context(|| format!("failed to read {}", path.display()))?;
            let Some(rest) = line.strip_prefix(KEY) else {
                continue;
            };
            let ended = match rest {
                "" => false,
                "]" | "]," => true,
                _ => bail!("{}: identities not in rekey's layout", path.display()),
            };
            return Ok(Some(Done {
                path,
                lines,
                last: None,
                ended,
            }));
        }
    }

    /// The next identity the report says was done, or `None` at the end of its identities.
    pub(crate) fn next_done(&mut self) -> Result<Option<IdentityId>> {
        while let Some(line) = self.next_identity()? {
            if line.outcome == Outcome::Done
                && let Some(id) = line.id()
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The next identity's line, whatever became of it, or `None` at the end of its
    /// identities; a line out of order is refused.
    pub(crate) fn next_identity(&mut self) -> Result<Option<IdentityReport>> {
        let Some(line) = self.next_line()? else {
            return Ok(None);
        };
        let key = (line.node.clone(), line.service.clone());
        if self.last.as_ref().is_some_and(|last| *last >= key) {
            bail!("{}: identities out of order", self.path.display());
        }
        self.last = Some(key);
        Ok(Some(line))
    }

    /// One identity's object, whole, or `None` at the array's end.
    fn next_line(&mut self) -> Result<Option<IdentityReport>> {
        if self.ended {
            return Ok(None);
        }
        let mut text = String::new();
        loop {
            let line = self.read()?;
            match (text.is_empty(), line.as_str()) {
                (true, END) | (true, "  ],") => {
                    self.ended = true;
                    return Ok(None);
                }
                (true, OPEN) => text.push_str(OPEN),
                (true, _) => bail!("{}: identities not in rekey's layout", self.path.display()),
                (false, CLOSE) | (false, "    },") => {
                    text.push('}');
                    let line = serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a rekey report", self.path.display())
                    })?;
                    return Ok(Some(line));
                }
                (false, _) => text.push_str(&line),
            }
        }
    }

    fn read(&mut self) -> Result<String> {
        match self.lines.next() {
            Some(line) => line.with_context(|| format!("failed to read {}", self.path.display())),
            None => bail!("{}: cut short in its identities", self.path.display()),
        }
    }
}

/// The counts of `run`'s saved report, read from the lines before its identities in the layout
/// `Report::to_json` writes (its top-level `counts` object); `None` when it has no report, or
/// not in that layout.
pub(crate) fn counts(run: &RunDir) -> Option<Counts> {
    let file = File::open(run.report()).ok()?;
    let mut lines = BufReader::with_capacity(1 << 16, file).lines();
    let mut text = String::new();
    loop {
        let line = lines.next()?.ok()?;
        if line.starts_with(KEY) {
            return None;
        }
        if text.is_empty() && line != COUNTS {
            continue;
        }
        text.push_str(&line);
        if line == "  }" || line == "  }," {
            let text = text.trim_end_matches(',');
            return serde_json::from_str(&text[COUNTS.len() - 1..]).ok();
        }
    }
}

#[cfg(test)]
mod tests;
