//! What each fuzz target does with one input. The fuzz targets call these, and so does
//! `tests/fuzz_regressions.rs` for every input a fuzzer once found a fault with, so CI
//! replays them without fuzzing.
//!
//! Each function panics only on a broken invariant; rejecting the input is the normal case. Each
//! returns whether the input was accepted, so that a test can tell a check from a rejection.

#![allow(dead_code)] // each fuzz target uses one of these functions

use std::sync::OnceLock;

use rekey::ca::{self, Ca};
use rekey::fsio::Slot;
use rekey::inspect::{self, Credential, Facts};
use rekey::plan::Plan;
use rekey::policy::Policy;
use rekey::scan::{Candidate, Files};

/// The CAs an input can pick with its first byte: RSA (openssl-made), P-256 and Ed25519.
fn cas() -> &'static [Ca; 3] {
    static CAS: OnceLock<[Ca; 3]> = OnceLock::new();
    CAS.get_or_init(|| {
        let load = |cert: &[u8], key: &[u8]| ca::from_pem(cert, Some(key)).expect("fixture CA");
        [
            load(
                include_bytes!("../fixtures/openssl-rsa/ca/ca.crt"),
                include_bytes!("../fixtures/openssl-rsa/ca/ca.key"),
            ),
            load(
                include_bytes!("../fixtures/generated-p256/ca/ca.crt"),
                include_bytes!("../fixtures/generated-p256/ca/ca.key"),
            ),
            load(
                include_bytes!("../fixtures/generated-ed25519/ca/ca.crt"),
                include_bytes!("../fixtures/generated-ed25519/ca/ca.key"),
            ),
        ]
    })
}

/// Splits `input` at its first `sep`.
fn split(input: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match input.iter().position(|b| *b == sep) {
        Some(at) => (&input[..at], Some(&input[at + 1..])),
        None => (input, None),
    }
}

/// `<CA byte><node/service>\n<token.jwt bytes>`: verifies the token as that identity's.
pub fn token(input: &[u8]) -> bool {
    let Some((&pick, rest)) = input.split_first() else {
        return false;
    };
    let ca = &cas()[usize::from(pick) % 3];
    let (sub, token) = split(rest, b'\n');
    let (Ok(sub), Some(token)) = (std::str::from_utf8(sub), token) else {
        return false;
    };
    match rekey::token::verify(token, ca, sub) {
        Ok(info) => {
            assert!(info.not_before <= info.expires, "{info:?}");
            true
        }
        Err(why) => {
            let why = why.to_string();
            assert!(!why.is_empty());
            false
        }
    }
}

/// `<mode byte><cert.pem bytes>[\0<key.pem bytes>]`. Modes 0–2 inspect a leaf against one
/// of the CAs; mode 3 loads the pair as a CA.
pub fn certificate(input: &[u8]) -> bool {
    let Some((&pick, rest)) = input.split_first() else {
        return false;
    };
    let (cert, key) = split(rest, 0);
    let mode = usize::from(pick) % 4;
    if mode == 3 {
        let Ok(ca) = ca::from_pem(cert, key) else {
            return false;
        };
        assert!(!ca.common_name.is_empty());
        assert_eq!(ca.has_key(), key.is_some());
        return true;
    }
    let candidate = Candidate {
        id: rekey::names::IdentityId::new("n1", "svc").expect("valid names"),
        dir: "nodes/n1/svc".into(),
        is_link: false,
    };
    let files = Files {
        cert: Slot::Present(cert.to_vec()),
        key: key.map_or(Slot::Absent, |k| Slot::Present(k.to_vec())),
        token: Slot::Absent,
        in_flight: None,
        dir: None,
    };
    let seen = inspect::inspect(&candidate, &files, ca::Trusted::alone(&cas()[mode]));
    assert!(seen.token.is_none());
    let Some(Credential { facts, key_alg, .. }) = seen.cert else {
        panic!("a present certificate was not inspected");
    };
    match facts {
        Facts::Usable(_) => {
            assert!(key_alg.is_some());
            true
        }
        Facts::NotReadable => panic!("bytes given are always read"),
        // Every problem names the file it is about.
        Facts::Unusable(why) => {
            let why = why.to_string();
            assert!(
                why.starts_with("cert.pem ") || why.starts_with("key.pem "),
                "{why}"
            );
            false
        }
    }
}

/// A plan, TOML or JSON: what parses must survive being written and read back in both formats.
pub fn plan(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(plan) = Plan::parse(text) else {
        return false;
    };
    for (format, written) in [("TOML", plan.to_toml()), ("JSON", plan.to_json())] {
        match Plan::parse(&written) {
            Ok(again) => assert_eq!(again, plan, "{format} round trip"),
            Err(e) => {
                panic!("{format} written from a parsed plan does not parse: {e:#}\n{written}")
            }
        }
    }
    true
}

/// A policy: what parses is within the documented bounds.
pub fn policy(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(policy) = Policy::parse(text) else {
        return false;
    };
    assert!((1..=3650).contains(&policy.validity_days));
    assert!((1..=99).contains(&policy.stalled_below_percent));
    assert!(policy.min_age() < policy.validity());
    assert!(policy.services.keys().all(|s| rekey::names::is_valid(s)));
    true
}
