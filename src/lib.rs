//! rekey: finds the service credentials of a fleet that cannot rotate themselves, plans their
//! rotation and shows it.
//!
//! Data flows one way: `scan` finds identities, `inspect` reads their files against the `ca`,
//! `classify` judges each credential under the `policy` at one instant, `survey` gathers the
//! results, and `plan` and `report` render them. `fleet` builds fleets for tests and the demo.

pub mod apply;
pub mod ca;
pub mod catalog;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod exit;
pub mod fleet;
pub mod fsio;
pub mod inspect;
pub mod issue;
pub mod journal;
pub mod keys;
pub mod names;
pub mod pemblock;
pub mod plan;
pub mod policy;
pub mod recover;
pub mod report;
pub mod rollback;
pub mod rotate;
pub mod runs;
pub mod scan;
pub mod signer;
pub mod survey;
pub mod token;
