//! `rekey policy`: the policy in force, printed as a `rekey.toml` that parses back to the same
//! policy (built-in table included), with where it came from; mistyped service names are
//! warned about on stderr.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::{policy, scan};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
}

pub(crate) fn policy(o: &Options) -> Result<Exit> {
    let root = crate::fsio::fleet_root(&o.root)?;
    let loaded = policy::load(&root)?;
    // The fleet's own service names only sharpen the warnings: a root without `nodes/` still
    // has a policy to show.
    let names = scan::nodes(&root)
        .map(|n| scan::service_names(&root, &n.nodes))
        .unwrap_or_default();
    let services = names.iter().map(String::as_str).collect();
    let mut warnings = loaded.warnings(&services);
    warnings.extend(crate::out::metrics_file_warning(&loaded.policy, &root));
    for warning in warnings {
        eprintln!("rekey: warning: {}", crate::values::Escaped::new(&warning));
    }
    emit(&format!(
        "# the policy in force for {}: {}\n# policy_sha256 {}\n{}",
        root.display(),
        loaded.source.describe(),
        loaded.policy.digest(),
        loaded.policy.to_toml(),
    ))?;
    Ok(Exit::Ok)
}
