//! Records that grow with the fleet, set aside as they come: each a JSON line in an unnamed
//! file, read back from the start as often as needed, each reader at its own offset, so that
//! what a run or a report lists of the whole fleet is not held in memory. The first records are
//! held until there are more than a few (most lists are short, and then no file is made). A
//! file that cannot be made or take a record (no writable directory, a full filesystem) is not
//! an error: from then on every record is held in memory, and none is lost.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Records, in the order they were put: those in the file, then those held.
pub(crate) struct Aside<T> {
    /// Where the file is made (`None`: the temporary directory).
    dir: Option<PathBuf>,
    /// Records held before the file is made: past this many, it is.
    hold_first: usize,
    state: State,
    held: Vec<T>,
    len: usize,
    _records: PhantomData<T>,
}

impl<T> std::fmt::Debug for Aside<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aside")
            .field("len", &self.len)
            .field("filed", &matches!(self.state, State::Filed(_)))
            .finish_non_exhaustive()
    }
}

enum State {
    /// No file yet: every record is held.
    Holding,
    /// Every record before `held` is in the file (what its buffer has not written yet
    /// included).
    Filed(BufWriter<File>),
    /// The file could not be made, or refused a record: every record is held.
    Failed,
}

impl<T: Serialize + DeserializeOwned + Clone> Aside<T> {
    /// Records set aside in an unnamed file in `dir` (else in `TMPDIR`), made once more than
    /// `hold_first` were put.
    pub(crate) fn new(dir: Option<&Path>, hold_first: usize) -> Aside<T> {
        Aside {
            dir: dir.map(Path::to_path_buf),
            hold_first,
            state: State::Holding,
            held: Vec::new(),
            len: 0,
            _records: PhantomData,
        }
    }

    /// Records held in memory only (a list already held whole).
    pub(crate) fn held(records: Vec<T>) -> Aside<T> {
        Aside {
            dir: None,
            hold_first: 0,
            len: records.len(),
            state: State::Failed,
            held: records,
            _records: PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, record: T) {
        self.len += 1;
        if matches!(self.state, State::Holding) && self.held.len() >= self.hold_first {
            self.state = match self.make_file() {
                Some(file) => State::Filed(file),
                None => State::Failed,
            };
            let held = std::mem::take(&mut self.held);
            for r in held {
                self.put(r);
            }
        }
        self.put(record);
    }

    fn make_file(&self) -> Option<BufWriter<File>> {
        let file = match &self.dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        };
        file.ok().map(|f| BufWriter::with_capacity(1 << 16, f))
    }

    fn put(&mut self, record: T) {
        if let State::Filed(file) = &mut self.state {
            let written = serde_json::to_writer(&mut *file, &record)
                .map_err(io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if written.is_ok() {
                return;
            }
            // A buffer the file refused may be cut anywhere: every record is held from now on.
            self.hold_all();
        }
        self.held.push(record);
    }

    /// A second handle on the same records, to read (after [`Aside::flush`]): the file shared
    /// (its readers never move its offset), or, when it cannot be, its records held.
    pub(crate) fn share(&self) -> Aside<T> {
        let state = match &self.state {
            State::Filed(file) => match file.get_ref().try_clone() {
                Ok(file) => State::Filed(BufWriter::new(file)),
                Err(_) => {
                    return Aside::held(self.read().filter_map(Result::ok).collect());
                }
            },
            State::Holding => State::Holding,
            State::Failed => State::Failed,
        };
        Aside {
            dir: self.dir.clone(),
            hold_first: self.hold_first,
            state,
            held: self.held.clone(),
            len: self.len,
            _records: PhantomData,
        }
    }

    /// Makes every record readable ([`Aside::read`]): the file's buffer written out.
    pub(crate) fn flush(&mut self) {
        if let State::Filed(file) = &mut self.state
            && file.flush().is_err()
        {
            // What did not reach the file is read back with what did, into memory.
            self.hold_all();
        }
    }

    /// Moves every record into memory, after a write to the file failed: what the file took and
    /// what its buffer still holds are, together, every record put so far but the one being
    /// put (a last line without its newline), which the caller holds itself.
    fn hold_all(&mut self) {
        let State::Filed(file) = std::mem::replace(&mut self.state, State::Failed) else {
            return;
        };
        let (file, buffered) = file.into_parts();
        let mut bytes = Vec::new();
        if (At { file: &file, at: 0 }).read_to_end(&mut bytes).is_err() {
            bytes.clear();
        }
        bytes.extend_from_slice(&buffered.unwrap_or_default());
        let mut records: Vec<T> = bytes
            .split_inclusive(|b| *b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        records.append(&mut self.held);
        self.held = records;
    }

    /// Every record, in order, from the first (after [`Aside::flush`]); each call reads on its
    /// own, whatever other readers are doing.
    pub(crate) fn read(&self) -> impl Iterator<Item = io::Result<T>> + '_ {
        let filed = match &self.state {
            State::Filed(file) => Some(
                BufReader::with_capacity(
                    1 << 16,
                    At {
                        file: file.get_ref(),
                        at: 0,
                    },
                )
                .lines()
                .map(|line| serde_json::from_str::<T>(&line?).map_err(io::Error::from)),
            ),
            _ => None,
        };
        filed
            .into_iter()
            .flatten()
            .chain(self.held.iter().cloned().map(Ok))
    }
}

/// Reads a file from `at` on with `pread`, never moving the file's own offset: readers of one
/// file never disturb each other.
pub(crate) struct At<'a> {
    pub(crate) file: &'a File,
    pub(crate) at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct R(u32, String);

    fn records(n: u32) -> Vec<R> {
        (0..n).map(|i| R(i, format!("record {i}\nwith a newline"))).collect()
    }

    /// Below the threshold nothing is filed; above it every record is, read back in order as
    /// often as asked, two readers at once included.
    #[test]
    fn records_come_back_in_order_held_or_filed() {
        for (n, hold_first) in [(0, 4), (3, 4), (4, 4), (5, 4), (20_000, 16), (100, 0)] {
            let mut aside = Aside::new(None, hold_first);
            for r in records(n) {
                aside.push(r);
            }
            aside.flush();
            assert_eq!(aside.len(), n as usize);
            assert_eq!(
                matches!(aside.state, State::Filed(_)),
                n as usize > hold_first,
                "{n} past {hold_first}"
            );
            let mut first = aside.read();
            let half: Vec<R> = first.by_ref().take(n as usize / 2).map(Result::unwrap).collect();
            let whole: Vec<R> = aside.read().map(Result::unwrap).collect();
            assert_eq!(whole, records(n));
            let rest: Vec<R> = first.map(Result::unwrap).collect();
            assert_eq!([half, rest].concat(), records(n));
        }
    }

    /// A directory where no file can be made: every record is held, none lost.
    #[test]
    fn without_a_file_every_record_is_held() {
        let mut aside = Aside::new(Some(Path::new("/nonexistent/directory")), 2);
        for r in records(10) {
            aside.push(r);
        }
        aside.flush();
        assert!(matches!(aside.state, State::Failed));
        let back: Vec<R> = aside.read().map(Result::unwrap).collect();
        assert_eq!(back, records(10));
    }
}
