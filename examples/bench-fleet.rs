//! A fleet of N plain identities for profiling:
//! `cargo run --release --example bench-fleet -- DIR N [rsa]` (a P-256 CA unless `rsa`).
//! Every key it writes is a TEST-ONLY key.

use rekey::keys::KeyAlg;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: bench-fleet DIR N [rsa]");
    };
    let ca_alg = match args.get(3).map(String::as_str) {
        Some("rsa") => KeyAlg::Rsa { bits: 2048 },
        _ => KeyAlg::P256,
    };
    rekey::token::install_provider();
    let (ca, ids) = rekey::catalog::uniform(chrono::Utc::now(), n.parse()?, ca_alg, KeyAlg::P256);
    std::fs::create_dir_all(dir)?;
    rekey::fleet::write_fleet(std::path::Path::new(dir), &ca, &ids)?;
    Ok(())
}
