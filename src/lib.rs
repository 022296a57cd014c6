//! rekey: finds the service credentials of a fleet that cannot rotate themselves, plans their
//! rotation, and rotates them in journaled batches.
//!
//! Data flows one way. Read side: `scan` finds identities, `inspect` reads their files against
//! the `ca`, `classify` judges each credential under the `policy` at one instant, `survey`
//! gathers the results, and `plan` and `report` render them. Write side: `write` is the one
//! home of a writing run (lock, replay, journaled batches, report, exit code). `cmd` holds one
//! module per subcommand. See docs/architecture.md.

pub mod ca;
pub mod catalog;
pub mod classify;
pub mod cmd;
pub mod digest;
pub mod exit;
pub mod fleet;
pub mod fsio;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod names;
pub mod pemblock;
pub mod plan;
pub mod policy;
pub mod report;
pub mod scan;
pub mod signer;
pub mod survey;
pub mod token;
pub mod write;
