//! Rebuilds `fixtures/generated-*`: the catalog fleet (one identity in every state and with every
//! problem) written by rekey's own generator, dated relative to the pinned instant in each
//! fixture's `AS_OF`. Every key it writes is a TEST-ONLY key.
//!
//! Run from the repository root: `cargo run --example make-fixtures`, then regenerate the golden
//! plans with `REKEY_BLESS=1 cargo test --test golden`.

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use rekey::catalog::every_case;
use rekey::fleet::{self, CaSpec, Flaw};
use rekey::keys::KeyAlg;
use rekey::keys::KeyFormat;

const AS_OF: &str = "2026-11-28T00:00:00Z";

fn main() -> Result<()> {
    let as_of: DateTime<Utc> = AS_OF.parse()?;
    for (name, ca_alg, ca_format, leaf) in [
        (
            "generated-p256",
            KeyAlg::P256,
            KeyFormat::Traditional,
            KeyAlg::P384,
        ),
        (
            "generated-ed25519",
            KeyAlg::Ed25519,
            KeyFormat::Pkcs8,
            KeyAlg::Rsa { bits: 2048 },
        ),
    ] {
        let root = Path::new("fixtures").join(name);
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("AS_OF"), format!("{AS_OF}\n"))?;
        let ca = CaSpec {
            alg: ca_alg,
            common_name: format!("{name} fixture CA"),
            window: fleet::window(as_of - chrono::TimeDelta::days(365), 3650),
            key_format: ca_format,
        };
        // A 1 MiB token is tested by the command-line tests; it has no place in the repository.
        let ids: Vec<_> = every_case(as_of, leaf)
            .into_iter()
            .filter(|s| s.flaw != Some(Flaw::TokenOversized))
            .collect();
        fleet::write_fleet(&root, &ca, &ids)?;
        println!("wrote {} ({} identities)", root.display(), ids.len());
    }
    Ok(())
}
