//! rekey: finds the service credentials of a fleet that cannot rotate themselves, plans their
//! rotation, and rotates them in journaled batches.
//!
//! Data flows one way. Read side: `scan` finds identities, `inspect` reads their files against
//! the `ca`, `classify` judges each credential under the `policy` at one instant, `survey`
//! gathers the results, and `plan` and `report` render them. Write side: `write` is the one
//! home of a writing run (lock, replay, journaled batches, report, exit code). `cmd` holds one
//! module per subcommand. See docs/architecture.md.
//!
//! The public surface is what the binary needs: [`cmd`] (one function and its options per
//! subcommand), [`exit`], the plan [`Format`](plan::Format) and the writing [`Settings`]
//! (write::Settings). The `testkit` feature opens the inner modules and the fleet generators to
//! the tests, the benchmark and the fuzz targets; a release build has none of it.
//!
//! `pub` means used from outside the library (the binary, the tests, the benchmark); everything
//! else is `pub(crate)`, and `unreachable_pub` says so where a `pub` cannot be reached.

#![warn(unreachable_pub)]

/// Declares modules that are private to the crate, and public with the `testkit` feature. Their
/// `pub` items are what the tests use: unreachable without the testkit by design, so the lint
/// judges them in the testkit build, where it still finds a `pub` nothing outside can reach.
macro_rules! inner {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            #[cfg(feature = "testkit")]
            pub mod $name;
            $(#[$attr])*
            #[cfg(not(feature = "testkit"))]
            #[allow(unreachable_pub)]
            mod $name;
        )*
    };
}

inner!(
    aside, ca, classify, count, digest, fleet, fsio, html, inspect, issue, keys, metrics, names,
    out, pemblock, policy, problem, report, scan, signer, store, survey, token, trust,
);

/// Fleets for the tests and the benchmark (the demo fleet lives in `cmd::demo`).
#[cfg(feature = "testkit")]
pub mod catalog;

pub mod cmd;
pub mod exit;
pub mod plan;
pub mod select;
pub mod values;
pub mod write;
