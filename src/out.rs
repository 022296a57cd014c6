//! Standard output, for data only (tables, plans, reports): buffered, and a closed pipe is an
//! error `main` ends quietly on. Progress, warnings and errors go to stderr.

use std::io::Write;

use anyhow::{Context, Result};

/// Writes data to stdout.
pub fn emit(text: &str) -> Result<()> {
    emit_with(|w| w.write_all(text.as_bytes()))
}

/// Streams data to stdout through a buffer.
pub fn emit_with(
    fill: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    fill(&mut out)
        .and_then(|()| out.flush())
        .context("failed to write to stdout")
}
