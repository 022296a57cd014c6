//! What a writing run records on disk, and how it reads back: journal entries, the hook calls
//! they name, the report, the audit log, and the history of runs. The bottom floor of the write
//! wing: it knows the store's layout ([`crate::store`]) and nothing above it.

pub mod audit;
pub mod calls;
pub mod entries;
pub mod history;
pub mod run;
pub mod run_report;
