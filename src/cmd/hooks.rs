//! `rekey hooks retry`: run the hooks earlier runs left pending (failed, timed out, or cut short
//! by a crash) now, instead of at the start of the next writing run.

use std::path::PathBuf;

use anyhow::Result;

use crate::exit::Exit;
use crate::write::hooks::HookStatus;
use crate::write::{Settings, WriteRun};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub write: Settings,
}

pub fn retry(o: &Options) -> Result<Exit> {
    // Taking the lock runs every pending hook (see `WriteRun::begin`).
    let run = WriteRun::begin(&o.root, o.write.started, &o.write)?;
    let retried = run.retried_hooks();
    let failed = retried
        .iter()
        .filter(|r| r.result.status != HookStatus::Ok)
        .count();
    eprintln!(
        "rekey: {} pending hooks ran, {} of them failed (still pending)",
        retried.len(),
        failed
    );
    Ok(if failed > 0 { Exit::WorkDue } else { Exit::Ok })
}
