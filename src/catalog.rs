//! Fleets to generate: one identity in every state and with every problem of docs/design.md §3 that the
//! generator can make, dated relative to one instant (the command-line tests check its
//! classification and `fixtures/generated-*` are built from it); a fleet of mixed services issued
//! over a hundred days, for pages that must read true at scale; and a plain uniform fleet of any
//! size for benchmarks.

use chrono::{DateTime, TimeDelta, Utc};

use crate::fleet::{Flaw, IdentitySpec, San, window};
use crate::keys::KeyAlg;
use crate::keys::KeyFormat;

/// The catalog's identities; `leaf` is the key type of the plain `n1/mocctl` identity.
pub fn every_case(as_of: DateTime<Utc>, leaf: KeyAlg) -> Vec<IdentitySpec> {
    let id = |node: &str, service: &str, ago: i64| {
        IdentitySpec::new(node, service, window(as_of - TimeDelta::days(ago), 90))
    };
    let issued = |ago: i64| Some(window(as_of - TimeDelta::days(ago), 90));
    let with = |mut spec: IdentitySpec, f: &dyn Fn(&mut IdentitySpec)| {
        f(&mut spec);
        spec
    };
    let flawed = |node: &str, service: &str, flaw: Flaw| {
        with(id(node, service, 20), &|s| s.flaw = Some(flaw))
    };
    vec![
        with(id("n1", "mocctl", 30), &|s| s.key_alg = leaf),
        with(id("n1", "kms", 30), &|s| {
            s.key_alg = KeyAlg::Rsa { bits: 2048 };
            s.key_format = KeyFormat::Traditional;
            s.sans = vec![
                San::Dns("kms.n1".into()),
                San::Ip([10, 1, 2, 3].into()),
                San::Uri("spiffe://fleet/n1/kms".into()),
            ];
        }),
        with(id("n1", "csi", 80), &|s| {
            s.key_format = KeyFormat::Traditional
        }),
        with(id("n1", "kva", 0), &|s| {
            s.key_alg = KeyAlg::P384;
            s.cert = Some(window(as_of - TimeDelta::hours(22), 90));
            s.token = s.cert;
        }),
        with(id("n1", "caph", 100), &|s| {
            s.key_alg = KeyAlg::Ed25519;
            s.token = issued(10);
        }),
        with(id("n1", "backup", 100), &|s| s.token = issued(10)),
        with(id("n2", "mocctl", 95), &|s| s.cert = issued(30)),
        with(id("n2", "kms", 100), &|s| s.token = None),
        with(id("n2", "csi", 20), &|s| s.token = None),
        with(id("n2", "kva", 20), &|s| s.cert = None),
        with(id("n2", "caph", 20), &|s| s.write_key = false),
        flawed("n3", "mocctl", Flaw::ForeignCaCert),
        flawed("n3", "kms", Flaw::KeyMismatch),
        flawed("n3", "csi", Flaw::TruncatedCert),
        flawed("n3", "kva", Flaw::TwoCerts),
        flawed("n3", "caph", Flaw::CertSymlink),
        flawed("n4", "mocctl", Flaw::TokenAlgNone),
        flawed("n4", "kms", Flaw::TokenHmac),
        flawed("n4", "csi", Flaw::TokenForged),
        flawed("n4", "kva", Flaw::TokenWrongSub),
        flawed("n4", "caph", Flaw::TokenOversized),
        with(id("n5", "mocctl", -2), &|s| s.token = None),
    ]
}

/// A plain fleet of `n` identities (`node-NNN/svc-NNNN`, a thousand per node), all issued 30 days
/// before `now`, for benchmarks and profiling.
/// `n` identities on 30 nodes, five kinds of service in tens (`kms-00`, …), issued over the `days`
/// days before `as_of` (identity `i` `i * 7 % days` days back), one in 211 with a key that does
/// not match its certificate. Over 100 days, a fleet whose monthly rotations were not all made.
pub fn spread(n: usize, days: usize, as_of: DateTime<Utc>) -> Vec<IdentitySpec> {
    (0..n)
        .map(|i| {
            let service = ["kms", "mocctl", "csi", "caph", "capi"][i / 30 % 5];
            let ago = i64::try_from(i * 7 % days.max(1)).unwrap_or(0);
            let mut spec = IdentitySpec::new(
                &format!("node-{:02}", i % 30),
                &format!("{service}-{:02}", i / 150),
                window(as_of - TimeDelta::days(ago), 90),
            );
            if i % 211 == 0 {
                spec.flaw = Some(Flaw::KeyMismatch);
            }
            spec
        })
        .collect()
}

pub fn uniform(
    now: DateTime<Utc>,
    n: usize,
    ca_alg: KeyAlg,
    leaf: KeyAlg,
) -> (crate::fleet::CaSpec, Vec<IdentitySpec>) {
    let ca = crate::fleet::CaSpec {
        alg: ca_alg,
        common_name: "bench CA".into(),
        window: window(now - TimeDelta::days(30), 3650),
        key_format: KeyFormat::Pkcs8,
    };
    let ids = (0..n)
        .map(|i| {
            let mut s = IdentitySpec::new(
                &format!("node-{:03}", i / 1000),
                &format!("svc-{:04}", i % 1000),
                window(now - TimeDelta::days(30), 90),
            );
            s.key_alg = leaf;
            s
        })
        .collect();
    (ca, ids)
}
