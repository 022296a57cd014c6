//! The plan read as a stream: what it accepts, in order, and what it refuses, naming where.

use super::*;
use crate::ca::Stage;

/// Reads `text` as `apply` reads a plan file: its header and its entries.
fn read(text: &str) -> Result<(ValidPlan, Vec<(IdentityId, PlannedIdentity)>)> {
    let plan = ReadPlan::read(text.as_bytes())?;
    let entries = plan.entries()?.collect::<Result<Vec<_>>>()?;
    Ok((plan.header, entries))
}

const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn plan(identities: &str) -> String {
    let n = identities.matches("[[identity]]").count();
    format!(
        "version = 2\nroot = \"/fleet\"\nas_of = \"2026-11-28T00:00:00Z\"\nvalidity_days = 90\n\
         keys = \"rotate\"\npolicy_sha256 = \"{SHA}\"\nca_sha256 = \"{SHA}\"\n\
         ca_not_after = \"2030-01-01T00:00:00Z\"\nca_stage = \"steady\"\nidentities = {n}\n{identities}"
    )
}

fn block(node: &str, action: &str) -> String {
    format!(
        "\n[[identity]]\nnode = \"{node}\"\nservice = \"kms\"\n\
         cert = {{ action = \"{action}\", reason = \"r\", sha256 = \"{SHA}\" }}\n"
    )
}

#[test]
fn a_plan_made_during_a_ca_rotation_keeps_its_stage_and_second_ca() {
    let text = plan("").replace(
        "\"steady\"",
        &format!("\"switched\"\nca_other_sha256 = \"{SHA}\""),
    );
    let (valid, _) = read(&text).unwrap();
    assert_eq!(valid.ca_stage, Stage::Switched);
    assert_eq!(
        valid.ca_other_sha256.map(|d| d.hex()),
        Some(SHA.to_string())
    );
    let steady = read(&plan("")).unwrap().0;
    assert_eq!(
        (steady.ca_stage, steady.ca_other_sha256),
        (Stage::Steady, None)
    );
}

#[test]
fn a_valid_plan_gives_its_entries_in_order_and_its_digest() {
    let text = plan(&format!("{}{}", block("n1", "rotate"), block("n2", "keep")));
    let read_plan = ReadPlan::read(text.as_bytes()).unwrap();
    assert_eq!(read_plan.sha256, Digest::of(text.as_bytes()));
    let ids: Vec<String> = read_plan
        .entries()
        .unwrap()
        .map(|e| e.unwrap().0.to_string())
        .collect();
    assert_eq!(ids, ["n1/kms", "n2/kms"]);
    // Read back as often as the run needs.
    assert_eq!(read_plan.entries().unwrap().count(), 2);
    let (_, entries) = read(&text).unwrap();
    let cert = entries[0].1.cert.unwrap();
    assert_eq!(
        (cert.action, cert.sha256.map(|d| d.hex())),
        (crate::classify::Action::Rotate, Some(SHA.to_string()))
    );
}

#[test]
fn a_json_plan_reads_as_its_toml() {
    let text = plan(&format!("{}{}", block("n1", "rotate"), block("n2", "keep")));
    let json = crate::plan::Plan::parse(&text).unwrap().to_json();
    let (toml_header, toml_entries) = read(&text).unwrap();
    let (json_header, json_entries) = read(&json).unwrap();
    assert_eq!((toml_header, toml_entries), (json_header, json_entries));
    let twice = json.replacen("\"n2\"", "\"n1\"", 1);
    let err = format!("{:#}", read(&twice).unwrap_err());
    assert!(
        err.contains("n1/kms is planned twice (identity entry 1 and identity entry 2)"),
        "{err}"
    );
    let header_twice = json.replacen("\"version\": 2,", "\"version\": 2, \"version\": 2,", 1);
    let err = format!("{:#}", read(&header_twice).unwrap_err());
    assert!(err.contains("duplicate field `version`"), "{err}");
}

#[test]
fn refuses_plans_naming_what_is_wrong() {
    let twice = plan(&format!("{}{}", block("n1", "rotate"), block("n1", "keep")));
    let cases = [
        (
            "duplicate identity, both lines named",
            twice,
            "n1/kms is planned twice (line 12 and line 17)",
        ),
        (
            "out of order",
            plan(&format!("{}{}", block("n2", "rotate"), block("n1", "keep"))),
            "line 17: n1/kms comes after n2/kms (line 12): a plan lists its identities in \
             (node, service) order",
        ),
        (
            "planned twice, not one after the other",
            plan(&format!(
                "{}{}{}",
                block("n1", "rotate"),
                block("n2", "keep"),
                block("n1", "keep")
            )),
            "n1/kms is planned twice (line 12 and line 22)",
        ),
        (
            "a table longer than a plan's can be",
            plan(&format!(
                "{}\n# {}\n",
                block("n1", "rotate"),
                "z".repeat(MAX_TABLE_BYTES)
            )),
            "line 12: the table that starts there is longer than a plan's can be",
        ),
        (
            "identities inline in the header",
            plan("").replace(
                "version = 2",
                "identity = [{ node = \"n1\", service = \"kms\" }]\nversion = 2",
            ),
            "the plan's header holds identity or issue entries",
        ),
        (
            "a parse error in a table names the plan's line",
            plan(&block("n1", "rotate")).replace("service = \"kms\"", "service = kms"),
            "line 14: ",
        ),
        (
            "a bad digest names its own line, not its entry's",
            plan(&format!("{}{}", block("n1", "rotate"), block("n2", "rotate")))
                .replace(
                    &format!("\"n2\"\nservice = \"kms\"\ncert = {{ action = \"rotate\", reason = \"r\", sha256 = \"{SHA}\""),
                    "\"n2\"\nservice = \"kms\"\ncert = { action = \"rotate\", reason = \"r\", sha256 = \"00\"",
                ),
            "line 20: n2/kms cert.sha256 \"00\" is not a SHA-256 digest",
        ),
        (
            "a bad date in a table of its own names its line",
            plan(
                "\n[[identity]]\nnode = \"n1\"\nservice = \"kms\"\n\n[identity.cert]\n\
                 action = \"keep\"\nreason = \"r\"\n\nnot_after = \"soon\"\n",
            ),
            "line 20: n1/kms cert.not_after \"soon\" is not an RFC 3339 time",
        ),
        (
            "a missing digest names the entry's table",
            plan(&block("n1", "rotate")).replace(&format!(", sha256 = \"{SHA}\""), ""),
            "line 15: n1/kms cert.sha256 is missing",
        ),
        (
            "bad name",
            plan(&block("../x", "rotate")),
            "is not a valid node/service name",
        ),
        (
            "relative root",
            plan("").replace("\"/fleet\"", "\"fleet\""),
            "is not an absolute path",
        ),
        (
            "bad as_of",
            plan("").replace("2026-11-28T00:00:00Z", "yesterday"),
            "as_of \"yesterday\" is not an RFC 3339 time",
        ),
        (
            "bad digest",
            plan(&block("n1", "rotate"))
                .replace(&format!("sha256 = \"{SHA}\" }}"), "sha256 = \"00\" }"),
            "n1/kms cert.sha256 \"00\" is not a SHA-256 digest",
        ),
        (
            "rotate without digest",
            plan(&block("n1", "rotate")).replace(&format!(", sha256 = \"{SHA}\""), ""),
            "cert.sha256 is missing",
        ),
        (
            "no policy digest (an older plan)",
            plan("").replace("policy_sha256", "# policy_sha256"),
            "does not record the policy",
        ),
        (
            "no CA rotation stage",
            plan("").replace("ca_stage", "# ca_stage"),
            "does not record the stage of the CA rotation",
        ),
        (
            "an unknown CA rotation stage",
            plan("").replace("\"steady\"", "\"paused\""),
            "ca_stage \"paused\" is not a CA rotation stage",
        ),
        (
            "a second CA in a steady fleet",
            plan("").replace("ca_stage", &format!("ca_other_sha256 = \"{SHA}\"\nca_stage")),
            "names a second CA (ca_other_sha256) but says ca_stage = \"steady\"",
        ),
        (
            "a rotation without its second CA",
            plan("").replace("\"steady\"", "\"switched\""),
            "says ca_stage = \"switched\" but names no second CA",
        ),
        (
            "a bad second CA digest",
            plan("").replace("\"steady\"", "\"begun\"\nca_other_sha256 = \"00\""),
            "ca_other_sha256 \"00\" is not a SHA-256 digest",
        ),
        (
            "a plan of version 1",
            plan("").replace("version = 2", "version = 1"),
            "plan version 1 was made by an older rekey",
        ),
        (
            "absurd validity",
            plan("").replace("validity_days = 90", "validity_days = 0"),
            "validity_days 0 is outside",
        ),
        ("unknown action", plan(&block("n1", "revive")), "revive"),
        (
            "cut at an identity's boundary",
            plan(&format!(
                "{}{}",
                block("n1", "rotate"),
                block("n2", "rotate")
            ))
            .replace(&block("n2", "rotate"), ""),
            "the plan says identities = 2 but holds 1 identity entry",
        ),
        (
            "no identity count",
            plan(&block("n1", "rotate")).replace("identities = 1\n", ""),
            "has no identity count",
        ),
        (
            "a long name is quoted in part",
            plan(&block(&"x".repeat(100_000), "rotate")),
            "xxx…\"/\"kms\" is not a valid node/service name",
        ),
        (
            "a long line in a parse error is quoted in part",
            plan(&format!("\nbad = {}\n", "y".repeat(100_000))),
            "yyy…",
        ),
    ];
    for (name, text, needle) in cases {
        let err = format!("{:#}", read(&text).unwrap_err());
        assert!(err.contains(needle), "{name}: {err}");
        assert!(err.len() < 1000, "{name}: a short message: {err}");
    }
}
