//! `rekey policy`: the policy in force, printed as a `rekey.toml` that parses back to the same
//! policy (built-in table included), with where it came from and, field by field, whether the
//! file set it or it is built in (`--format json`: the same, for machines); mistyped service
//! names are warned about on stderr.

use std::path::PathBuf;

use anyhow::Result;

use super::emit;
use crate::exit::Exit;
use crate::{policy, scan};

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub json: bool,
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
    if o.json {
        emit(&json(&root, &loaded))?;
        return Ok(Exit::Ok);
    }
    let toml = loaded.policy.to_toml_noting(|field| {
        Some(match loaded.source_of(field) {
            "file" => "from rekey.toml".to_string(),
            _ => "built-in".to_string(),
        })
    });
    emit(&format!(
        "# the policy in force for {}: {}\n# policy_sha256 {}\n{toml}",
        root.display(),
        loaded.source.describe(),
        loaded.policy.digest(),
    ))?;
    Ok(Exit::Ok)
}

/// The policy document of `--format json`: where the policy came from, its digest, and each
/// field with its value and source (`builtin` or `file`).
fn json(root: &std::path::Path, loaded: &policy::Loaded) -> String {
    let (path, file_sha256) = match &loaded.source {
        policy::Source::Builtin => (None, None),
        policy::Source::File { path, sha256 } => (
            Some(path.to_string_lossy().into_owned()),
            Some(sha256.hex()),
        ),
    };
    let fields: Vec<serde_json::Value> = loaded
        .policy
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "service": f.service,
                "field": f.name,
                "value": f.value,
                "source": loaded.source_of(f),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "version": 1,
        "root": root.to_string_lossy(),
        "source": loaded.source.kind(),
        "path": path,
        "file_sha256": file_sha256,
        "policy_sha256": loaded.policy.digest().hex(),
        "fields": fields,
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value always serializes");
    text.push('\n');
    text
}
