//! The tables that pin `classify` (a row per case, boundary instants included).
use super::*;
use crate::inspect::Credential;
use crate::names::IdentityId;
use crate::policy::Policy;

const DAY: i64 = 86_400;

fn now() -> DateTime<Utc> {
    "2026-11-28T00:00:00Z".parse().unwrap()
}

/// A window relative to now, in seconds: issued `from` and expiring `to`.
fn w(from: i64, to: i64) -> Result<Window, String> {
    Ok(Window {
        not_before: now() + TimeDelta::seconds(from),
        not_after: now() + TimeDelta::seconds(to),
    })
}

fn cred(facts: Result<Window, String>) -> Credential {
    Credential {
        sha256: Some(crate::digest::Digest::of(b"")),
        stated: facts.as_ref().ok().copied(),
        facts: facts.map_err(crate::problem::Problem::new).into(),
        key_alg: None,
        names: None,
        key_not_readable: false,
        signed_by: Some(crate::ca::Role::Active),
    }
}

type Side = Option<Result<Window, String>>;
type Want = Option<(State, &'static str)>;
/// A certificate with this subject CN (`Some(None)`: none), or no certificate.
type Cn = Option<Option<&'static str>>;

fn check(
    name: &str,
    service: &str,
    cert: Side,
    token: Side,
    want_cert: Want,
    want_token: Want,
    ca_left: i64,
) {
    let policy = Policy::builtin();
    let ctx = Context {
        policy: &policy,
        ca_not_after: now() + TimeDelta::seconds(ca_left),
        now: now(),
    };
    let identity = Inspected {
        id: IdentityId::new("n1", service).unwrap(),
        cert: cert.map(cred),
        token: token.map(cred),
    };
    let (c, t) = classify(&identity, &ctx);
    for (side, got, want) in [("cert", c, want_cert), ("token", t, want_token)] {
        match (got, want) {
            (None, None) => {}
            (Some(v), Some((state, needle))) => {
                assert_eq!(v.state, state, "{name}: {side}: {}", v.reason);
                assert!(
                    v.reason.contains(needle),
                    "{name}: {side}: {:?} lacks {needle:?}",
                    v.reason
                );
            }
            (got, want) => panic!("{name}: {side}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn every_row_of_the_classification_table() {
    let ten_years = 3650 * DAY;
    let ok = Some(w(-30 * DAY, 60 * DAY));
    let life = 90 * DAY;
    // 25% of 90 days left is 22.5 days: exactly that is not "less than" it.
    let at_threshold = life / 4;
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Side, Side, Want, Want, i64)> = vec![
        ("due: cannot self-rotate", "mocctl", ok.clone(), ok.clone(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, "cannot self-rotate")), ten_years),
        ("unlisted service renews nothing", "custom", ok.clone(), None,
            Some((State::Due, "cannot self-rotate")), None, ten_years),
        ("self-renewing cert healthy, token due", "kms", ok.clone(), ok.clone(),
            Some((State::Healthy, "60 of 90 days left")), Some((State::Due, "cannot self-rotate")), ten_years),
        ("exactly at stalled_below_percent: healthy", "kms", Some(w(at_threshold - life, at_threshold)), None,
            Some((State::Healthy, "22 of 90")), None, ten_years),
        ("one second below the threshold: stalled", "kms", Some(w(at_threshold - 1 - life, at_threshold - 1)), None,
            Some((State::Stalled, "self-rotation stalled: 22 of 90 days left")), None, ten_years),
        ("one second above the threshold: healthy", "kms", Some(w(at_threshold + 1 - life, at_threshold + 1)), None,
            Some((State::Healthy, "renews itself")), None, ten_years),
        ("fresh: issued a second less than min_age ago", "mocctl", Some(w(-DAY + 1, 89 * DAY)), None,
            Some((State::Fresh, "fresh: issued")), None, ten_years),
        ("exactly min_age old: due", "mocctl", Some(w(-DAY, 89 * DAY)), None,
            Some((State::Due, "cannot self-rotate")), None, ten_years),
        ("not yet valid by exactly min_age: fresh", "mocctl", Some(w(DAY, 91 * DAY)), None,
            Some((State::Fresh, "fresh")), None, ten_years),
        ("not yet valid by more than min_age: problem", "mocctl", Some(w(DAY + 1, 91 * DAY)), ok.clone(),
            Some((State::Problem, "cert.pem is not valid until 2026-11-29T00:00:01Z")),
            Some((State::Problem, "identity has a problem: cert.pem is not valid until")), ten_years),
        ("cert at its not_after instant is still valid", "mocctl", Some(w(-life, 0)), ok.clone(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, "")), ten_years),
        ("cert expired a second ago, token valid: rotate", "mocctl", Some(w(-life - 1, -1)), ok.clone(),
            Some((State::Expired, "certificate expired 2026-11-27; the token is still valid")),
            Some((State::Due, "")), ten_years),
        ("self-renewing cert expired: stalled", "kms", Some(w(-life - 1, -1)), ok.clone(),
            Some((State::Stalled, "self-rotation stalled: certificate expired")), Some((State::Due, "")), ten_years),
        ("cert expired and no token: recover", "mocctl", Some(w(-life - 1, -1)), None,
            Some((State::Recover, "no token: run rekey recover")), None, ten_years),
        ("token expires in a second: due", "mocctl", ok.clone(), Some(w(-life + 1, 1)),
            Some((State::Due, "")), Some((State::Due, "")), ten_years),
        ("token at exactly exp: expired, recover both", "mocctl", ok.clone(), Some(w(-life, 0)),
            Some((State::Recover, "token expired 2026-11-28: run rekey recover")),
            Some((State::Recover, "token expired")), ten_years),
        ("expired token wins over a self-renewing policy", "kms", ok.clone(), Some(w(-life - DAY, -DAY)),
            Some((State::Recover, "token expired 2026-11-27")), Some((State::Recover, "")), ten_years),
        ("token-only identity", "mocctl", None, ok.clone(),
            None, Some((State::Due, "cannot self-rotate")), ten_years),
        ("problem wins over an expired token", "mocctl", Some(Err("cert.pem was not issued by this CA".into())),
            Some(w(-life - DAY, -DAY)),
            Some((State::Problem, "cert.pem was not issued by this CA")),
            Some((State::Problem, "identity has a problem: cert.pem was not issued by this CA")), ten_years),
        ("token problem spreads to the certificate", "kms", ok.clone(),
            Some(Err("token.jwt signature does not verify with the CA key".into())),
            Some((State::Problem, "identity has a problem: token.jwt signature")),
            Some((State::Problem, "token.jwt signature does not verify")), ten_years),
        ("CA expiring within the validity: capped", "mocctl", ok.clone(), ok.clone(),
            Some((State::Due, "cannot self-rotate; new validity capped at CA expiry 2026-12-28T00:00:00Z")),
            Some((State::Due, "capped")), 30 * DAY),
        ("CA capping leaves keep alone", "kms", ok.clone(), None,
            Some((State::Healthy, "renews itself: 60 of 90 days left")), None, 30 * DAY),
        ("CA expired and token expired: a problem, not a recovery", "mocctl", ok.clone(), Some(w(-life - DAY, -DAY)),
            Some((State::Problem, "CA expired 2026-11-27: renew the CA before rotating (token expired")),
            Some((State::Problem, "CA expired")), -DAY),
        ("CA expired: nothing can rotate", "mocctl", ok.clone(), None,
            Some((State::Problem, "CA expired 2026-11-27: renew the CA before rotating (cannot self-rotate)")),
            None, -DAY),
    ];
    for (name, service, cert, token, want_cert, want_token, ca_left) in cases {
        check(name, service, cert, token, want_cert, want_token, ca_left);
    }
}

#[test]
fn a_certificate_whose_subject_cn_does_not_match_the_policy_is_a_problem() {
    // Without the built-in table, `kms` renews nothing: every sound credential is due.
    const GLOBAL: &str =
        "version = 1\nbuiltin_services = false\nsubject_cn = \"{node}/{service}\"\n";
    const PER_SERVICE: &str = "version = 1\nbuiltin_services = false\n\
                               subject_cn = \"{node}/{service}\"\n\
                               [services.kms]\nsubject_cn = \"{service}.{node}\"\n";
    let ok = || Some(w(-30 * DAY, 60 * DAY));
    let expired = || Some(w(-91 * DAY, -DAY));
    let copied = "cert.pem subject CN \"node-01/kms\" does not match subject_cn \
                  \"{node}/{service}\" (expected \"node-02/kms\")";
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, Cn, Side, Want, Want)> = vec![
        ("unset: the fleet's naming is its own", "version = 1\nbuiltin_services = false\n", "kms", Some(Some("node-01/kms")), ok(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, "cannot self-rotate"))),
        ("global pattern matched", GLOBAL, "kms", Some(Some("node-02/kms")), ok(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, ""))),
        ("copied from another node's folder", GLOBAL, "kms", Some(Some("node-01/kms")), ok(),
            Some((State::Problem, copied)), Some((State::Problem, "identity has a problem: cert.pem subject CN"))),
        ("case matters", GLOBAL, "kms", Some(Some("NODE-02/kms")), ok(),
            Some((State::Problem, "(expected \"node-02/kms\")")), Some((State::Problem, ""))),
        ("no subject CN", GLOBAL, "kms", Some(None), ok(),
            Some((State::Problem, "cert.pem has no subject CN; subject_cn \"{node}/{service}\" expects \"node-02/kms\"")),
            Some((State::Problem, ""))),
        ("the service's pattern wins", PER_SERVICE, "kms", Some(Some("kms.node-02")), ok(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, ""))),
        ("the global pattern does not apply where the service has its own", PER_SERVICE, "kms", Some(Some("node-02/kms")), ok(),
            Some((State::Problem, "does not match subject_cn \"{service}.{node}\" (expected \"kms.node-02\")")),
            Some((State::Problem, ""))),
        ("another service falls back to the global pattern", PER_SERVICE, "csi", Some(Some("node-02/csi")), ok(),
            Some((State::Due, "cannot self-rotate")), Some((State::Due, ""))),
        ("a mismatch wins over an expired token", GLOBAL, "kms", Some(Some("node-01/kms")), expired(),
            Some((State::Problem, copied)), Some((State::Problem, "identity has a problem"))),
        ("a token-only identity has no subject to check", GLOBAL, "kms", None, ok(),
            None, Some((State::Due, "cannot self-rotate"))),
    ];
    for (name, policy, service, cn, token, want_cert, want_token) in cases {
        let policy = Policy::parse(policy).unwrap();
        let ctx = Context {
            policy: &policy,
            ca_not_after: now() + TimeDelta::days(3650),
            now: now(),
        };
        let identity = Inspected {
            id: IdentityId::new("node-02", service).unwrap(),
            cert: cn.map(|cn| Credential {
                names: cn.map(|cn| crate::inspect::CertNames {
                    subject_cn: cn.to_string(),
                    serial: "1".to_string(),
                }),
                ..cred(w(-30 * DAY, 60 * DAY))
            }),
            token: token.map(cred),
        };
        let (c, t) = classify(&identity, &ctx);
        for (side, got, want) in [("cert", c, want_cert), ("token", t, want_token)] {
            match (got, want) {
                (None, None) => {}
                (Some(v), Some((state, needle))) => {
                    assert_eq!(v.state, state, "{name}: {side}: {}", v.reason);
                    assert!(
                        v.reason.contains(needle),
                        "{name}: {side}: {:?} lacks {needle:?}",
                        v.reason
                    );
                }
                (got, want) => panic!("{name}: {side}: got {got:?}, want {want:?}"),
            }
        }
    }
}

#[test]
fn states_map_to_actions() {
    let cases = [
        (State::Healthy, Action::Keep),
        (State::Fresh, Action::Keep),
        (State::Due, Action::Rotate),
        (State::Stalled, Action::Rotate),
        (State::Expired, Action::Rotate),
        (State::Recover, Action::Recover),
        (State::Problem, Action::Skip),
    ];
    for (state, action) in cases {
        assert_eq!(state.action(), action, "{state:?}");
    }
}

#[test]
fn durations_read_naturally() {
    let cases = [
        (TimeDelta::days(12) + TimeDelta::hours(3), "12d 3h"),
        (TimeDelta::hours(5) + TimeDelta::minutes(10), "5h 10m"),
        (-TimeDelta::days(3), "3d 0h ago"),
        (TimeDelta::zero(), "0h 0m"),
    ];
    for (d, want) in cases {
        assert_eq!(human(d), want);
    }
}

#[test]
fn a_credential_of_the_previous_ca_is_due_whatever_its_age_and_renewal() {
    let policy = Policy::builtin();
    let ctx = Context {
        policy: &policy,
        ca_not_after: now() + TimeDelta::days(365),
        now: now(),
    };
    let by = |role, window: Result<Window, String>| Credential {
        signed_by: Some(role),
        ..cred(window)
    };
    // kms renews its own certificate; both are fresh (issued an hour ago).
    let fresh = w(-3600, 90 * DAY);
    for (role, want) in [
        (Role::Previous, (State::Due, "signed by the previous CA")),
        (Role::Next, (State::Fresh, "fresh")),
        (Role::Active, (State::Fresh, "fresh")),
    ] {
        let identity = Inspected {
            id: IdentityId::new("n1", "kms").unwrap(),
            cert: Some(by(role, fresh.clone())),
            token: Some(by(role, fresh.clone())),
        };
        let (c, t) = classify(&identity, &ctx);
        for v in [c.unwrap(), t.unwrap()] {
            assert_eq!((v.state, v.reason.contains(want.1)), (want.0, true), "{role:?}: {v:?}");
        }
    }
    // An expired certificate of the previous CA is still judged by its expiry.
    let identity = Inspected {
        id: IdentityId::new("n1", "mocctl").unwrap(),
        cert: Some(by(Role::Previous, w(-100 * DAY, -DAY))),
        token: Some(by(Role::Previous, w(-DAY, 89 * DAY))),
    };
    let (c, _) = classify(&identity, &ctx);
    assert_eq!(c.unwrap().state, State::Expired);
}
