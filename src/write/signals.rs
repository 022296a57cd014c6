//! SIGINT and SIGTERM during a writing run: the first asks the run to stop after the batch in
//! flight commits (the run then reports and releases its lock); a second ends the process at
//! once, which the journal makes safe (every identity stays wholly old or new until the next
//! writer's replay).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Whether, and by which signal, the run was asked to stop.
#[derive(Clone)]
pub(crate) struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers for the rest of the process.
    pub(crate) fn install() -> Result<Interrupt> {
        let signal = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees `asked` as the previous signal left it.
            flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&asked))
                .and_then(|_| flag::register(sig, Arc::clone(&asked)))
                .and_then(|_| flag::register_usize(sig, Arc::clone(&signal), sig as usize))
                .context("failed to install the signal handlers")?;
        }
        Ok(Interrupt { signal })
    }

    /// The signal that asked the run to stop, if one did.
    pub(crate) fn received(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n if n == SIGINT as usize => Some("SIGINT"),
            _ => Some("SIGTERM"),
        }
    }
}
