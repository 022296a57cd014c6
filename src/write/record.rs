//! What a writing run records on disk, and how it reads back: journal entries, the hook calls
//! they name, the report, the audit log, and the history of runs. The bottom floor of the write
//! wing: it knows the store's layout ([`crate::store`]) and nothing above it.

pub(crate) mod audit;
pub(crate) mod calls;
pub(crate) mod done;
pub(crate) mod entries;
pub(crate) mod history;
pub(crate) mod left;
pub(crate) mod pending_calls;
pub(crate) mod run;
pub(crate) mod run_report;
