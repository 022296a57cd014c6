//! The policy an operator can see (docs/design.md §4), through the real binary: a file extends
//! the built-in service table, a mistyped service is warned about, `status` and `plan` name the
//! policy in force, and `rekey policy` prints a policy that parses back to the same one.

mod common;

use common::*;
use rekey::catalog::every_case;
use rekey::keys::KeyAlg;

fn catalog_fleet(root: &std::path::Path) {
    build(
        root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_policy_of_only_version_1_plans_the_same_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    catalog_fleet(root);
    let (code, without, _) = run(root, &["plan"]);
    std::fs::write(root.join("rekey.toml"), "version = 1\n").unwrap();
    let (code_with, with, _) = run(root, &["plan"]);
    assert_eq!((code, code_with), (4, 4));
    assert_eq!(with, without, "a file of defaults is the built-in policy");
    assert_eq!(with.matches("action = \"keep\"").count(), 5, "{with}");
}

#[test]
fn builtin_services_false_replaces_the_table_and_a_file_adds_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    catalog_fleet(root);
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\n[services.backup]\nself_rotates_token = true\n",
    )
    .unwrap();
    let got = states(root);
    assert_eq!(got["n1/kms/cert"].0, "healthy", "kms is still built in");
    assert_eq!(got["n1/backup/token"].0, "healthy", "backup was added");
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\nbuiltin_services = false\n",
    )
    .unwrap();
    let got = states(root);
    assert_eq!(got["n1/kms/cert"].0, "due", "the built-in table is gone");
}

#[test]
fn a_mistyped_service_is_warned_about_with_the_nearest_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    catalog_fleet(root);
    std::fs::write(
        root.join("rekey.toml"),
        "version = 1\n[services.nodeagnet]\nself_renews_cert = true\n[services.backup]\n",
    )
    .unwrap();
    for command in ["status", "plan", "policy"] {
        let out = rekey()
            .args([command, "--root"])
            .arg(root)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("[services.nodeagnet]")
                && stderr.contains("did you mean \"nodeagent\"?"),
            "{command}: {stderr}"
        );
        assert!(
            !stderr.contains("[services.backup]"),
            "{command}: a service of the fleet is no typo: {stderr}"
        );
    }
}

#[test]
fn status_and_plan_name_the_policy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    catalog_fleet(root);
    let (_, stdout, _) = run(root, &["status"]);
    assert!(
        stdout.contains("policy built-in (no rekey.toml)"),
        "{stdout}"
    );
    let (_, _, stderr) = run(root, &["plan"]);
    assert!(
        stderr.contains("policy built-in (no rekey.toml)"),
        "{stderr}"
    );

    let text = "version = 1\nvalidity_days = 60\n";
    std::fs::write(root.join("rekey.toml"), text).unwrap();
    let file = format!(
        "{} (sha256 {})",
        std::fs::canonicalize(root)
            .unwrap()
            .join("rekey.toml")
            .display(),
        sha256(text.as_bytes())
    );
    let (_, stdout, _) = run(root, &["status"]);
    assert!(stdout.contains(&file), "{file}\n{stdout}");
    let (_, plan, stderr) = run(root, &["plan"]);
    assert!(stderr.contains(&file), "{stderr}");
    let digest = plan
        .lines()
        .find_map(|l| l.strip_prefix("policy_sha256 = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        stderr.contains(&format!("policy_sha256 {digest}")),
        "{stderr}"
    );
}

#[test]
fn the_printed_policy_is_the_same_policy_in_another_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    catalog_fleet(&one);
    std::fs::write(
        one.join("rekey.toml"),
        "version = 1\nkeys = \"reuse\"\nmetrics_file = \"metrics/rekey.prom\"\n\
         [services.backup]\nself_rotates_token = true\n",
    )
    .unwrap();
    let printed = rekey()
        .args(["policy", "--root"])
        .arg(&one)
        .output()
        .unwrap();
    assert_eq!(printed.status.code(), Some(0));
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.contains("builtin_services = false"), "{printed}");
    assert!(printed.contains("[services.kms]"), "{printed}");
    common::copy(&one, &two);
    std::fs::write(two.join("rekey.toml"), &printed).unwrap();
    let digest = |root: &std::path::Path| {
        let (_, plan, _) = run(root, &["plan"]);
        plan.lines()
            .find(|l| l.starts_with("policy_sha256"))
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&one), digest(&two));
    assert_eq!(states(&one), states(&two));
}
