//! The fleet's CAs: the one that signs (its certificate, checked once at start, and whether its
//! key is at hand), the files of `ca/` and the stage of a CA rotation they show, the CAs a reader
//! trusts while one is under way, and the checks an imported CA must pass.

mod cert;
mod files;
mod import;
mod trust;

pub use cert::Ca;
pub use cert::from_pem;
pub(crate) use cert::{KeyAccess, jwt_alg_for, load, to_utc};
pub(crate) use files::{CaDir, Role, Stage, bundle_text};
pub(crate) use import::{Needed, check as check_import};
pub(crate) use trust::{Rotation, load_rotation};
pub use trust::Trusted;
