//! The tables that pin `policy` (a row per case, boundary instants included).
use super::*;

#[test]
fn parses_the_documented_example() {
    let text = r#"
version = 1
validity_days = 90
stalled_below_percent = 25
min_age_hours = 24
keys = "rotate"

[services.nodeagent]
self_renews_cert = true
self_rotates_token = false
"#;
    let policy = Policy::parse(text).unwrap();
    assert!(policy.renewal("nodeagent").self_renews_cert);
    assert_eq!(policy.renewal("unlisted"), Renewal::default());
    assert_eq!(policy.keys, KeyMode::Rotate);
    assert_eq!(policy.max_plan_age_hours, 168);
}

#[test]
fn the_digest_names_the_policy_in_force_not_its_spelling() {
    let builtin = Policy::builtin().digest();
    let spelled = Policy::parse("version = 1\n\n# same as the default\nkeys = \"rotate\"\n")
        .unwrap()
        .digest();
    let longer = Policy::parse("version = 1\nvalidity_days = 91")
        .unwrap()
        .digest();
    let reuse = Policy::parse("version = 1\nkeys = \"reuse\"")
        .unwrap()
        .digest();
    assert_eq!(spelled, Policy::parse("version = 1").unwrap().digest());
    assert_eq!(spelled, builtin, "a file that only restates the defaults is the built-in policy");
    assert_ne!(spelled, longer);
    assert_ne!(spelled, reuse);
}

#[test]
fn the_ca_fields_default_to_a_year_and_a_window_longer_than_a_credential() {
    let builtin = Policy::builtin();
    assert_eq!(
        (builtin.ca_validity_days, builtin.ca_rotate_before_days, builtin.ca_trust_settle_hours),
        (365, 120, 0)
    );
    assert!(builtin.ca_rotate_before() > builtin.validity());
    let restated = "version = 1\nca_validity_days = 365\nca_rotate_before_days = 120\n\
                    ca_trust_settle_hours = 0\n";
    assert_eq!(
        Policy::parse(restated).unwrap().digest(),
        builtin.digest(),
        "the CA fields at their built-in values keep the digest policies had before them"
    );
    let set = Policy::parse(
        "version = 1\nca_validity_days = 730\nca_rotate_before_days = 150\n\
         ca_trust_settle_hours = 24\nca_reload = \"systemctl reload issuer\"\n",
    )
    .unwrap();
    assert_eq!(set.ca_validity(), TimeDelta::days(730));
    assert_eq!(set.ca_rotate_before(), TimeDelta::days(150));
    assert_eq!(set.ca_trust_settle(), TimeDelta::hours(24));
    assert_eq!(set.ca_reload.as_deref(), Some("systemctl reload issuer"));
    assert_ne!(set.digest(), builtin.digest());
    let shown = Policy::parse(&set.to_toml()).unwrap();
    assert_eq!(shown, set, "rekey policy prints the CA fields back");
}

#[test]
fn subject_cn_is_global_or_per_service_and_the_service_wins() {
    let policy = Policy::parse(
        "version = 1\nsubject_cn = \"{service}.{node}\"\n\
         [services.kms]\nsubject_cn = \"{node}/{service}\"\n[services.csi]\n",
    )
    .unwrap();
    let expected = |service: &str| {
        policy
            .subject_cn(service)
            .map(|p| p.expand("node-02", service))
    };
    assert_eq!(expected("kms").as_deref(), Some("node-02/kms"));
    assert_eq!(expected("csi").as_deref(), Some("csi.node-02"));
    assert_eq!(expected("unlisted").as_deref(), Some("unlisted.node-02"));
    let unset = Policy::parse("version = 1\n[services.kms]\n").unwrap();
    assert_eq!(unset.subject_cn("kms"), None);
    assert_eq!(Policy::builtin().subject_cn("kms"), None);
    let fixed = Policy::parse("version = 1\nsubject_cn = \"fleet\"").unwrap();
    assert_eq!(
        fixed.subject_cn("kms").map(|p| p.expand("n", "kms")),
        Some("fleet".to_string())
    );
}

#[test]
fn subject_cn_changes_the_digest_only_when_set() {
    let unset = Policy::parse(
        "version = 1\nbuiltin_services = false\n[services.kms]\nself_renews_cert = true",
    )
    .unwrap();
    let canonical = serde_json::to_string(&unset).unwrap();
    assert_eq!(
        canonical,
        "{\"validity_days\":90,\"stalled_below_percent\":25,\"min_age_hours\":24,\
         \"keys\":\"rotate\",\"max_plan_age_hours\":168,\"keep_runs\":12,\
         \"hook_timeout_seconds\":120,\"services\":{\"kms\":\
         {\"self_renews_cert\":true,\"self_rotates_token\":false}}}",
        "the canonical form of a policy without subject_cn is what it was before the field"
    );
    let global = Policy::parse(
        "version = 1\nsubject_cn = \"{service}\"\n[services.kms]\nself_renews_cert = true",
    )
    .unwrap();
    let per_service = Policy::parse(
        "version = 1\n[services.kms]\nself_renews_cert = true\nsubject_cn = \"{service}\"",
    )
    .unwrap();
    let digests = [unset.digest(), global.digest(), per_service.digest()];
    assert_ne!(digests[0], digests[1]);
    assert_ne!(digests[0], digests[2]);
    assert_ne!(digests[1], digests[2]);
}

#[test]
fn subject_cn_patterns_hold_only_node_and_service() {
    let cases = [
        ("placeholders and text", "{service}.{node}.fleet.internal", true),
        ("one placeholder", "{node}", true),
        ("no placeholder", "fleet", true),
        ("empty", "", false),
        ("unknown placeholder", "{host}", false),
        ("unclosed", "{node", false),
        ("stray closing brace", "node}", false),
        ("doubled braces", "{{node}}", false),
        ("upper case", "{Node}", false),
    ];
    for (name, text, ok) in cases {
        assert_eq!(SubjectCn::parse(text).is_ok(), ok, "{name}");
    }
}

#[test]
fn a_file_extends_the_builtin_service_table_unless_told_not_to() {
    let renews = |p: &Policy, s: &str| p.renewal(s).self_renews_cert;
    let cases = [
        ("defaults only", "version = 1", 8, true, false),
        (
            "one more service",
            "version = 1\n[services.vault]\nself_renews_cert = true",
            9,
            true,
            true,
        ),
        (
            "a built-in service overridden",
            "version = 1\n[services.kms]\nself_renews_cert = false",
            8,
            false,
            false,
        ),
        (
            "replaced",
            "version = 1\nbuiltin_services = false\n[services.vault]\nself_renews_cert = true",
            1,
            false,
            true,
        ),
    ];
    for (name, text, count, kms, vault) in cases {
        let policy = Policy::parse(text).unwrap();
        assert_eq!(policy.services.len(), count, "{name}");
        assert_eq!(renews(&policy, "kms"), kms, "{name}");
        assert_eq!(renews(&policy, "vault"), vault, "{name}");
    }
    assert_eq!(Policy::parse("version = 1").unwrap(), Policy::builtin());
}

#[test]
fn rejects_bad_policies_naming_the_field() {
    let cases = [
        (
            "unknown top-level field",
            "version = 1\nvalidty_days = 90",
            "validty_days",
        ),
        (
            "unknown service field",
            "version = 1\n[services.kms]\nrenews = true",
            "renews",
        ),
        (
            "wrong type",
            "version = 1\nvalidity_days = \"90\"",
            "validity_days",
        ),
        (
            "negative",
            "version = 1\nmin_age_hours = -1",
            "min_age_hours",
        ),
        (
            "zero validity",
            "version = 1\nvalidity_days = 0",
            "validity_days",
        ),
        ("newer version", "version = 2", "line 1: policy version 2"),
        (
            "a value out of range names its line",
            "version = 1\n\n# long enough\nvalidity_days = 0",
            "line 4: validity_days must be between 1 and 3650, not 0",
        ),
        (
            "a service's bad value names its line",
            "version = 1\n[services.kms]\nself_renews_cert = true\n\nsubject_cn = \"{node\"",
            "line 5: [services.kms] subject_cn \"{node\" may hold only",
        ),
        (
            "an empty reload names its line",
            "version = 1\n[services.kva]\n\nreload = \"\"",
            "line 4: [services.kva] reload is empty",
        ),
        ("missing version", "validity_days = 90", "version"),
        ("bad keys", "version = 1\nkeys = \"keep\"", "keys"),
        (
            "reload not a string",
            "version = 1\n[services.kms]\nreload = 1",
            "reload",
        ),
        (
            "empty reload",
            "version = 1\n[services.kms]\nreload = \"  \"",
            "[services.kms] reload is empty",
        ),
        (
            "zero plan age",
            "version = 1\nmax_plan_age_hours = 0",
            "max_plan_age_hours",
        ),
        (
            "bad service name",
            "version = 1\n[services.\"../x\"]",
            "service name",
        ),
        ("empty metrics file", "version = 1\nmetrics_file = \"\"", "metrics_file"),
        (
            "builtin_services not a boolean",
            "version = 1\nbuiltin_services = \"no\"",
            "builtin_services",
        ),
        (
            "bad subject_cn",
            "version = 1\nsubject_cn = \"{host}\"",
            "subject_cn \"{host}\" may hold only the placeholders {node} and {service}",
        ),
        (
            "empty subject_cn",
            "version = 1\nsubject_cn = \"\"",
            "subject_cn \"\" is empty",
        ),
        (
            "bad subject_cn of a service",
            "version = 1\n[services.kms]\nsubject_cn = \"{node\"",
            "[services.kms] subject_cn \"{node\" may hold only",
        ),
        (
            "CA window shorter than a credential",
            "version = 1\nvalidity_days = 90\nca_rotate_before_days = 89",
            "line 3: ca_rotate_before_days (89) must be at least validity_days (90)",
        ),
        (
            "CA lifetime inside its own window",
            "version = 1\nca_validity_days = 210",
            "ca_validity_days (210) must be longer than ca_rotate_before_days + validity_days (210)",
        ),
        (
            "CA window that leaves a new CA no life",
            "version = 1\nca_rotate_before_days = 300",
            "line 2: ca_validity_days (365) must be longer",
        ),
        ("CA settle past a year", "version = 1\nca_trust_settle_hours = 8761", "ca_trust_settle_hours"),
        ("empty ca_reload", "version = 1\nca_reload = \"\"", "ca_reload is empty"),
        (
            "subject_cn of the wrong type",
            "version = 1\nsubject_cn = 1",
            "subject_cn",
        ),
    ];
    for (name, text, needle) in cases {
        let err = format!("{:#}", Policy::parse(text).unwrap_err());
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn a_builtin_service_table_overrides_only_the_fields_it_names() {
    // Each built-in service, each of its fields set alone to a value unlike the built-in one:
    // that field changes, every other field of every service keeps its built-in value.
    let builtin = Policy::builtin();
    /// A field: its name, how to read it, a value unlike every built-in one ("": the opposite
    /// boolean).
    type Field = (&'static str, fn(&Service) -> String, &'static str);
    let fields: [Field; 4] = [
        ("self_renews_cert", |s| s.self_renews_cert.to_string(), ""),
        ("self_rotates_token", |s| s.self_rotates_token.to_string(), ""),
        ("subject_cn", |s| format!("{:?}", s.subject_cn), "\"cn-{node}\""),
        ("reload", |s| format!("{:?}", s.reload), "\"systemctl reload x\""),
    ];
    for (service, before) in &builtin.services {
        for (field, read, value) in &fields {
            let value = match *value {
                "" => (!read(before).parse::<bool>().unwrap()).to_string(),
                v => v.to_string(),
            };
            let text = format!("version = 1\n[services.{service}]\n{field} = {value}\n");
            let (policy, _, set) = Policy::parse_named(&text).unwrap();
            assert_eq!(set, [(Some(service.clone()), *field)].into(), "{text}");
            let after = &policy.services[service];
            for (other, read, _) in &fields {
                let (was, is) = (read(before), read(after));
                if other == field {
                    assert_ne!(was, is, "{text}: {field} is not overridden");
                } else {
                    assert_eq!(was, is, "{text}: {other} changed");
                }
            }
            let mut rest = policy.services.clone();
            rest.remove(service);
            let mut built_in_rest = builtin.services.clone();
            built_in_rest.remove(service);
            assert_eq!(rest, built_in_rest, "{text}: another service changed");
        }
    }
}

#[test]
fn top_level_fields_left_out_keep_their_built_in_values() {
    let (policy, _, set) = Policy::parse_named("version = 1\nkeep_runs = 3\n").unwrap();
    assert_eq!(set, [(None, "keep_runs")].into());
    let expected = Policy {
        keep_runs: 3,
        ..Policy::builtin()
    };
    assert_eq!(policy, expected);
}
