//! `status --format json` is a document a machine can use (docs/design.md §5): it validates
//! against docs/status.schema.json, every credential has its path, its expiry as RFC 3339 and as
//! whole seconds left (negative once expired), and the totals add up. No secret is in it.

mod common;

use std::path::Path;

use common::*;
use rekey::catalog::every_case;
use rekey::keys::KeyAlg;
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the shipped schema is a valid JSON Schema")
}

fn status_json(root: &Path, extra: &[&str]) -> (String, Value) {
    let (_, stdout, stderr) = run(root, &[&["status", "--format", "json"], extra].concat());
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (stdout, doc)
}

fn assert_valid(validator: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

#[test]
fn the_status_json_validates_against_its_schema() {
    let validator = schema();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    std::fs::create_dir_all(root.join("nodes/n1/empty")).unwrap();
    let (_, doc) = status_json(root, &[]);
    assert_valid(&validator, &doc, "every case");
    let (_, doc) = status_json(root, &["--state", "healthy"]);
    assert_valid(&validator, &doc, "filtered");
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nmetrics_file = \"m.prom\"\n[services.nodeagnet]\n",
    )
    .unwrap();
    let (_, doc) = status_json(root, &[]);
    assert_valid(&validator, &doc, "with a policy file and a warning");
    assert_eq!(doc["policy"]["source"], "file");
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1);
    let openssl = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openssl-rsa");
    let (_, doc) = status_json(&openssl, &[]);
    assert_valid(&validator, &doc, "the openssl fleet");

    // The schema is strict: an unknown field or a wrong type is refused.
    let mut wrong = doc.clone();
    wrong["credentials"][0]["seconds_left"] = Value::from("3d");
    assert!(!validator.is_valid(&wrong));
    let mut wrong = doc;
    wrong["extra"] = Value::from(1);
    assert!(!validator.is_valid(&wrong));
}

#[test]
fn every_credential_has_its_path_expiry_and_seconds_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    let (stdout, doc) = status_json(root, &[]);
    assert_eq!(doc["version"], 1);
    let as_of: chrono::DateTime<chrono::Utc> = doc["as_of"].as_str().unwrap().parse().unwrap();
    let credentials = doc["credentials"].as_array().unwrap();
    let mut by_state = std::collections::BTreeMap::<String, u64>::new();
    let mut negative = 0;
    for c in credentials {
        let path = Path::new(c["path"].as_str().unwrap());
        let file = if c["kind"] == "cert" {
            "cert.pem"
        } else {
            "token.jwt"
        };
        let want = std::fs::canonicalize(root)
            .unwrap()
            .join("nodes")
            .join(c["node"].as_str().unwrap())
            .join(c["service"].as_str().unwrap())
            .join(file);
        assert_eq!(path, want, "{c}");
        *by_state
            .entry(c["state"].as_str().unwrap().to_string())
            .or_default() += 1;
        if let Some(at) = c["expires_at"].as_str() {
            let at: chrono::DateTime<chrono::Utc> = at.parse().unwrap();
            let left = c["seconds_left"].as_i64().expect("an integer");
            assert_eq!(left, (at - as_of).num_seconds(), "{c}");
            negative += usize::from(left < 0);
        } else {
            assert!(
                c["seconds_left"].is_null() && c["state"] == "problem",
                "{c}"
            );
        }
    }
    assert!(
        negative >= 3,
        "expired credentials have negative seconds_left"
    );
    let totals = &doc["totals"];
    assert_eq!(
        totals["credentials"].as_u64().unwrap() as usize,
        credentials.len()
    );
    assert_eq!(totals["identities"], 22);
    for (state, n) in totals["credentials_by_state"].as_object().unwrap() {
        assert_eq!(
            n.as_u64().unwrap(),
            by_state.get(state).copied().unwrap_or(0),
            "{state}"
        );
    }
    let identities: u64 = totals["identities_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(identities, 22);
    assert_eq!(totals["nearest"]["node"], "n1");
    assert_eq!(totals["nearest"]["service"], "csi");
    assert_eq!(totals["nearest"]["seconds_left"], 10 * 86_400);
    assert_eq!(doc["ca"]["seconds_left"], 3285 * 86_400);
    assert_eq!(doc["policy"]["source"], "builtin");
    assert_eq!(doc["policy"]["services"]["kms"]["self_renews_cert"], true);
    for secret in secrets(root) {
        assert!(!stdout.contains(&secret), "a secret leaked into the JSON");
    }
}
