//! The fleet's CAs: the one that signs (its certificate, checked once at start, and whether its
//! key is at hand), the files of `ca/` and the stage of a CA rotation they show, the CAs a reader
//! trusts while one is under way, and the checks an imported CA must pass.

mod cert;
#[allow(dead_code, reason = "the CA rotation commands (ca begin, switch, finish, abort) are built on these next; the tests use them now")]
mod files;
#[allow(dead_code, reason = "the CA rotation commands (ca begin, switch, finish, abort) are built on these next; the tests use them now")]
mod import;
mod trust;

pub use cert::Ca;
#[cfg_attr(
    not(feature = "testkit"),
    expect(unused_imports, reason = "the tests and fuzz targets use it")
)]
pub use cert::from_pem;
pub(crate) use cert::{KeyAccess, jwt_alg_for, load, to_utc};
#[allow(unused_imports, reason = "the CA rotation commands (ca begin, switch, finish, abort) are built on these next; the tests use them now")]
pub(crate) use files::{CaDir, PairPaths, Role, Stage, bundle_text};
#[allow(unused_imports, reason = "the CA rotation commands (ca begin, switch, finish, abort) are built on these next; the tests use them now")]
pub(crate) use import::{Needed, check as check_import};
pub(crate) use trust::{Rotation, load_rotation};
pub use trust::Trusted;
