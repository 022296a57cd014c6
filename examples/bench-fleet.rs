//! A fleet of N plain identities for profiling:
//! `cargo run --release --example bench-fleet -- DIR N [rsa]` (a P-256 CA unless `rsa`).
//! Every key it writes is a TEST-ONLY key.

use chrono::{TimeDelta, Utc};
use rekey::fleet::{self, CaSpec, IdentitySpec};
use rekey::keys::{KeyAlg, KeyFormat};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: bench-fleet DIR N [rsa]");
    };
    let ca_alg = match args.get(3).map(String::as_str) {
        Some("rsa") => KeyAlg::Rsa { bits: 2048 },
        _ => KeyAlg::P256,
    };
    let n: usize = n.parse()?;
    let now = Utc::now();
    let ca = CaSpec {
        alg: ca_alg,
        common_name: "bench CA".into(),
        window: fleet::window(now - TimeDelta::days(30), 3650),
        key_format: KeyFormat::Pkcs8,
    };
    let ids: Vec<_> = (0..n)
        .map(|i| {
            let window = fleet::window(now - TimeDelta::days(30), 90);
            IdentitySpec::new(
                &format!("node-{:03}", i / 1000),
                &format!("svc-{:04}", i % 1000),
                window,
            )
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    fleet::write_fleet(std::path::Path::new(dir), &ca, &ids)?;
    Ok(())
}
