//! The fleet of the README's 1,500-identity expiry page: `rekey::catalog::spread` over the 85
//! days before now (identities rotated at different times, none past its token, a few keys that
//! do not match).
//! `cargo run --example readme-fleet -- DIR [N]` (N defaults to 1500), then
//! `rekey status --root DIR --format html -o expiry.html`. Every key it writes is a TEST-ONLY key.

use rekey::fleet::{self, CaSpec};
use rekey::keys::{KeyAlg, KeyFormat};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        anyhow::bail!("usage: readme-fleet DIR [N]");
    };
    let n = args.get(2).map_or(Ok(1500), |n| n.parse())?;
    rekey::token::install_provider();
    let now = chrono::Utc::now();
    let ca = CaSpec {
        alg: KeyAlg::P256,
        common_name: "fleet CA".to_string(),
        window: fleet::window(now - chrono::TimeDelta::days(365), 3650),
        key_format: KeyFormat::Pkcs8,
    };
    fleet::write_fleet(
        std::path::Path::new(dir),
        &ca,
        &rekey::catalog::spread(n, 85, now),
    )?;
    Ok(())
}
