//! Golden plans: each fleet under `fixtures/` (with its pinned `AS_OF`) must plan to exactly the
//! bytes in `plans/<fixture>.toml` and `plans/<fixture>.json`, with the fixture's absolute path
//! written as `<ROOT>`. `REKEY_BLESS=1 cargo test --test golden` rewrites them after a deliberate
//! change (see fixtures/README.md).

mod common;

use std::path::Path;

#[test]
fn every_fixture_plans_to_its_golden_bytes() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fixtures: Vec<_> = std::fs::read_dir(manifest.join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("AS_OF").is_file())
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 3,
        "the fixtures are present: {fixtures:?}"
    );
    let bless = std::env::var_os("REKEY_BLESS").is_some();
    let mut mismatches = Vec::new();
    for fixture in &fixtures {
        let name = fixture.file_name().unwrap().to_str().unwrap();
        let as_of = std::fs::read_to_string(fixture.join("AS_OF")).unwrap();
        let root = std::fs::canonicalize(fixture).unwrap();
        for format in ["toml", "json"] {
            let out = common::rekey()
                .args(["plan", "--format", format, "--as-of", as_of.trim()])
                .arg("--root")
                .arg(&root)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(4),
                "{name}: every fixture has problems to report"
            );
            let root_text = root.to_str().unwrap();
            let got = String::from_utf8(out.stdout)
                .unwrap()
                .replace(root_text, "<ROOT>");
            let golden = manifest.join("plans").join(format!("{name}.{format}"));
            if bless {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, &got).unwrap();
            } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(got.as_str()) {
                mismatches.push(format!("{}:\n{got}", golden.display()));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "plans differ from their golden files:\n{}",
        mismatches.join("\n")
    );
}
