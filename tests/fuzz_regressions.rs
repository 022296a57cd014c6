//! What the fuzz targets check (`fuzz/harness.rs`), replayed without fuzzing: every input kept
//! under `fuzz/regressions/<target>/` (faults a fuzzer found, and hand-made edge cases), and
//! inputs made from the checked-in fixtures the way `fuzz/run.sh` seeds its corpora.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// A harness function: checks one input, says whether it was accepted.
type Check = fn(&[u8]) -> bool;

const TARGETS: [(&str, Check); 4] = [
    ("token", harness::token),
    ("certificate", harness::certificate),
    ("plan", harness::plan),
    ("policy", harness::policy),
];

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[test]
fn every_kept_input_replays_without_breaking_an_invariant() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        for input in files(&Path::new("fuzz/regressions").join(target)) {
            // A broken invariant panics, naming the input.
            eprintln!("{target}: {}", input.display());
            check(&std::fs::read(&input).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= 8, "only {replayed} kept inputs");
}

#[test]
fn the_edge_cases_kept_are_judged_as_documented() {
    let read = |p: &str| std::fs::read(Path::new("fuzz/regressions").join(p)).unwrap();
    assert!(harness::plan(&read("plan/escaped-strings.toml")));
    assert!(harness::plan(&read("plan/json-control-characters.json")));
    assert!(harness::policy(&read("policy/longest-minimum-age.toml")));
    assert!(!harness::policy(&read(
        "policy/minimum-age-equals-validity.toml"
    )));
    assert!(!harness::policy(&read("policy/service-name-escape.toml")));
    assert!(!harness::token(&read("token/empty-segments")));
    assert!(!harness::certificate(&read("certificate/empty-pem-blocks")));
}

/// Every fixture fleet's tokens, certificates and CA through the harness: the valid ones are
/// accepted (so the harness reaches past parsing), the forged ones refused.
#[test]
fn fixture_inputs_reach_the_checks() {
    let mut accepted = [0usize; 3];
    let mut refused = [0usize; 3];
    let mut count = |i: usize, ok: bool| {
        if ok {
            accepted[i] += 1
        } else {
            refused[i] += 1
        }
    };
    let fleets = ["openssl-rsa", "generated-p256", "generated-ed25519"];
    for (pick, fleet) in fleets.iter().enumerate() {
        let root = Path::new("fixtures").join(fleet);
        for node in files(&root.join("nodes")) {
            for dir in files(&node) {
                let id = format!(
                    "{}/{}",
                    node.file_name().unwrap().to_str().unwrap(),
                    dir.file_name().unwrap().to_str().unwrap()
                );
                if let Ok(token) = std::fs::read(dir.join("token.jwt")) {
                    let mut input = vec![pick as u8];
                    input.extend_from_slice(format!("{id}\n").as_bytes());
                    input.extend_from_slice(&token);
                    count(0, harness::token(&input));
                }
                if let Ok(cert) = std::fs::read(dir.join("cert.pem")) {
                    let mut input = vec![pick as u8];
                    input.extend_from_slice(&cert);
                    if let Ok(key) = std::fs::read(dir.join("key.pem")) {
                        input.push(0);
                        input.extend_from_slice(&key);
                    }
                    count(1, harness::certificate(&input));
                }
            }
        }
        let mut ca = vec![3u8];
        ca.extend_from_slice(&std::fs::read(root.join("ca/ca.crt")).unwrap());
        ca.push(0);
        ca.extend_from_slice(&std::fs::read(root.join("ca/ca.key")).unwrap());
        count(2, harness::certificate(&ca));
    }
    for (i, what) in ["tokens", "certificates"].iter().enumerate() {
        assert!(
            accepted[i] >= 20 && refused[i] >= 3,
            "{what}: {} accepted, {} refused",
            accepted[i],
            refused[i]
        );
    }
    assert_eq!((accepted[2], refused[2]), (3, 0), "CAs");
    for plan in files(Path::new("plans")) {
        assert!(
            harness::plan(&std::fs::read(&plan).unwrap()),
            "{}",
            plan.display()
        );
    }
}
