//! `rekey rotate`: plan and apply in one run, what the monthly pipeline runs. Rotates every
//! identity the fleet judges `rotate` (of the selection, for a canary run; with `--force`, also
//! the credentials it would keep). `--dry-run` is the same run with the sink that writes
//! nothing (`write::Sink::Nowhere`): the same decisions, the report it would write.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::exit::Exit;
use crate::select::Selection;
use crate::write::{self, Settings, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub as_of: DateTime<Utc>,
    /// Which identities (all, unless `--node`/`--service` name some).
    pub selection: Selection,
    pub force: bool,
    /// How the run is carried out, `--dry-run` (its sink) included.
    pub write: Settings,
}

pub(crate) fn rotate(o: &Options) -> Result<Exit> {
    let run = WriteRun::begin(&o.root, o.as_of, &o.write)?;
    write::rotate_streamed(run, &o.selection, o.force)
}
