//! Login tokens (docs/design.md §2): compact JWS verified against the CA key with the one algorithm the
//! CA's key type fixes, and signed the same way.
//!
//! Token text is a secret: no error or value from here carries it, only what was wrong with it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::ca::{Ca, Role, Trusted, to_utc};
use crate::problem::Problem;

/// The claims of a rekey token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) jti: String,
}

impl Claims {
    /// Fresh claims for `sub` issued by `iss`, valid over `[not_before, not_after)`, with a new
    /// random `jti`.
    pub(crate) fn new(
        iss: &str,
        sub: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<Claims> {
        Ok(Claims {
            iss: iss.to_string(),
            sub: sub.to_string(),
            iat: not_before.timestamp(),
            nbf: not_before.timestamp(),
            exp: not_after.timestamp(),
            jti: random_jti()?,
        })
    }
}

/// What a verified token says about its validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenInfo {
    pub not_before: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Verifies `bytes` (the whole `token.jwt`) as a token of identity `sub` issued by `ca`.
/// The error is a fragment that follows the file name ("token.jwt ...").
pub fn verify(bytes: &[u8], ca: &Ca, sub: &str) -> Result<TokenInfo, Problem> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if text.is_empty() {
        return Err(Problem::new("is empty"));
    }
    if !text.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::new("is not one compact JWT (unexpected characters or lines)"));
    }
    // Claims are read as JSON values so that a missing or non-numeric claim is named.
    let data = with_validation(ca, sub, |validation| {
        jsonwebtoken::decode::<serde_json::Value>(text, ca.decoding_key(), validation)
    })
    .map_err(|err| describe(err.kind(), ca, sub))?;
    let claims = &data.claims;
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| format!("has no numeric {name} claim"))
    };
    let (nbf, exp) = (number("nbf")?, number("exp")?);
    number("iat")?;
    let jti = claims
        .get("jti")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if jti.len() != 32
        || !jti
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Problem::new("has a jti that is not 128 bits of lowercase hex"));
    }
    if nbf > exp {
        return Err(Problem::new("has nbf after exp"));
    }
    Ok(TokenInfo {
        not_before: to_utc(nbf),
        expires: to_utc(exp),
    })
}

/// Runs `f` with the checks a token of identity `sub` issued by `ca` must pass. They are made
/// once per thread and CA, and only `sub` is set for each token (a token is checked per identity,
/// 10^5 and more a run).
fn with_validation<R>(
    ca: &Ca,
    sub: &str,
    f: impl FnOnce(&jsonwebtoken::Validation) -> R,
) -> R {
    use std::cell::RefCell;
    thread_local! {
        static CHECKS: RefCell<Option<jsonwebtoken::Validation>> = const { RefCell::new(None) };
    }
    CHECKS.with_borrow_mut(|checks| {
        let of_ca = |v: &jsonwebtoken::Validation| {
            v.algorithms == [ca.jwt_alg]
                && v.iss.as_ref().is_some_and(|iss| {
                    iss.len() == 1 && iss.contains(ca.common_name.as_str())
                })
        };
        if !checks.as_ref().is_some_and(of_ca) {
            *checks = None;
        }
        let validation = checks.get_or_insert_with(|| {
            let mut validation = jsonwebtoken::Validation::new(ca.jwt_alg);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
            validation.set_issuer(&[&ca.common_name]);
            validation
        });
        match &mut validation.sub {
            Some(s) => {
                s.clear();
                s.push_str(sub);
            }
            none => *none = Some(sub.to_string()),
        }
        f(validation)
    })
}

/// Verifies a token against the CAs the fleet trusts: the one its `kid` names, or else each in
/// turn (the active CA first, whose problem is the one told). Says which CA signed it.
pub(crate) fn verify_trusted(
    bytes: &[u8],
    trusted: Trusted<'_>,
    sub: &str,
) -> Result<(TokenInfo, Role), Problem> {
    if !trusted.is_rotating() {
        return verify(bytes, trusted.active, sub).map(|t| (t, Role::Active));
    }
    let text = std::str::from_utf8(bytes.strip_suffix(b"\n").unwrap_or(bytes)).unwrap_or_default();
    let named = jsonwebtoken::decode_header(text)
        .ok()
        .and_then(|h| h.kid)
        .and_then(|kid| trusted.by_key_id(&kid));
    if let Some((role, ca)) = named {
        return verify(bytes, ca, sub).map(|t| (t, role));
    }
    let mut first = None;
    for (role, ca) in trusted.each() {
        match verify(bytes, ca, sub) {
            Ok(t) => return Ok((t, role)),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| Problem::new("was not issued by a CA this fleet trusts")))
}

fn describe(kind: &ErrorKind, ca: &Ca, sub: &str) -> String {
    match kind {
        ErrorKind::InvalidSignature => "signature does not verify with the CA key".to_string(),
        ErrorKind::InvalidAlgorithm => format!("is not signed with {:?}", ca.jwt_alg),
        ErrorKind::InvalidIssuer => "was not issued by this CA (iss is wrong)".to_string(),
        ErrorKind::InvalidSubject => format!("sub does not name this identity ({sub})"),
        ErrorKind::MissingRequiredClaim(claim) if matches!(claim.as_str(), "exp" | "nbf") => {
            format!("has no numeric {claim} claim")
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("has a malformed {claim} claim"),
        ErrorKind::Json(_) => format!(
            "has a malformed header or claims (alg must be {:?})",
            ca.jwt_alg
        ),
        _ => "is not a valid compact JWT".to_string(),
    }
}

/// A token signer holding the CA private key.
pub(crate) struct Signer {
    alg: jsonwebtoken::Algorithm,
    key: jsonwebtoken::EncodingKey,
    /// The header's `kid`: the signing CA's key id, so that a reader trusting two CAs during a
    /// CA rotation knows which key to verify with.
    kid: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?}, [secret key elided])", self.alg)
    }
}

impl Signer {
    /// Builds a signer from the CA key in PEM (PKCS#8; PKCS#1 for RSA; SEC1 for EC).
    pub(crate) fn from_pem(key_pem: &[u8], alg: jsonwebtoken::Algorithm) -> Result<Signer> {
        use jsonwebtoken::Algorithm::*;
        let key = match alg {
            RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(key_pem),
            ES256 | ES384 => ec_pkcs8(key_pem, alg),
            EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(key_pem),
            _ => anyhow::bail!("rekey does not sign tokens with {alg:?}"),
        }
        .context("the CA key cannot sign tokens")?;
        Ok(Signer {
            alg,
            key,
            kid: None,
        })
    }

    /// The same signer, naming its CA's key id in every token's header.
    pub(crate) fn with_kid(self, kid: String) -> Signer {
        Signer {
            kid: Some(kid),
            ..self
        }
    }

    pub(crate) fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.kid.clone_from(&self.kid);
        jsonwebtoken::encode(&header, claims, &self.key).context("failed to sign a token")
    }
}

/// jsonwebtoken signs EC keys only from PKCS#8; a SEC1 key is converted first.
fn ec_pkcs8(
    key_pem: &[u8],
    alg: jsonwebtoken::Algorithm,
) -> jsonwebtoken::errors::Result<jsonwebtoken::EncodingKey> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
    let Ok(block) = crate::pemblock::single(key_pem) else {
        return jsonwebtoken::EncodingKey::from_ec_pem(key_pem);
    };
    if block.label != "EC PRIVATE KEY" {
        return jsonwebtoken::EncodingKey::from_ec_pem(key_pem);
    }
    let curve = if alg == jsonwebtoken::Algorithm::ES256 {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    };
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(curve, &block.der)
        .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey)?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey)?;
    Ok(jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))
}

/// 128 random bits as lowercase hex: a token's `jti`.
pub(crate) fn random_jti() -> Result<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    Ok(hex::encode(bytes))
}

/// Installs rekey's JWT crypto provider for this process: aws-lc throughout, as jsonwebtoken's
/// own, except that a signing key is parsed once and kept, instead of once per token (an RSA
/// key's checks cost more than the signature). Must run before any token is signed or verified;
/// returns false when another provider was already in place (tokens are then still correct,
/// only slower to sign).
pub fn install_provider() -> bool {
    static PROVIDER: std::sync::OnceLock<jsonwebtoken::crypto::CryptoProvider> =
        std::sync::OnceLock::new();
    let provider = PROVIDER.get_or_init(|| {
        let base = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
        jsonwebtoken::crypto::CryptoProvider {
            signer_factory: cached::signer,
            verifier_factory: cached::verifier,
            key_utils: base.key_utils.clone(),
        }
    });
    provider.install_default().is_ok()
}

/// Parsed signing keys, by their encoded bytes. A run signs with one CA key; the cache holds it.
mod cached {
    use std::sync::{Arc, Mutex, OnceLock};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
    use jsonwebtoken::crypto::JwtSigner;
    use jsonwebtoken::errors::{ErrorKind, Result};
    use jsonwebtoken::{Algorithm, EncodingKey};

    enum Key {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    struct Cached {
        alg: Algorithm,
        key: Arc<Key>,
    }

    type Cache = Mutex<Vec<((Algorithm, Vec<u8>), Arc<Key>)>>;

    fn cache() -> &'static Cache {
        static CACHE: OnceLock<Cache> = OnceLock::new();
        CACHE.get_or_init(|| Mutex::new(Vec::new()))
    }

    pub(crate) fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
        if !matches!(
            alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA
        ) {
            return (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.signer_factory)(alg, key);
        }
        let id = (*alg, key.as_bytes().to_vec());
        let mut entries = cache().lock().map_err(|_| ErrorKind::InvalidKeyFormat)?;
        if let Some((_, parsed)) = entries.iter().find(|(k, _)| *k == id) {
            return Ok(Box::new(Cached {
                alg: *alg,
                key: parsed.clone(),
            }));
        }
        let bytes = key.as_bytes();
        let parsed = Arc::new(match alg {
            Algorithm::RS256 => Key::Rsa(
                RsaKeyPair::from_der(bytes).map_err(|_| ErrorKind::InvalidRsaKey(String::new()))?,
            ),
            Algorithm::ES256 => Key::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                    .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
            ),
            Algorithm::ES384 => Key::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, bytes)
                    .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
            ),
            _ => {
                Key::Ed(Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| ErrorKind::InvalidEddsaKey)?)
            }
        });
        entries.push((id, parsed.clone()));
        Ok(Box::new(Cached {
            alg: *alg,
            key: parsed,
        }))
    }

    type Verifiers = Mutex<Vec<((Algorithm, Vec<u8>), Arc<signature::ParsedPublicKey>)>>;

    fn verifiers() -> &'static Verifiers {
        static CACHE: OnceLock<Verifiers> = OnceLock::new();
        CACHE.get_or_init(|| Mutex::new(Vec::new()))
    }

    /// A verifier with the CA's public key parsed once (an RSA key's modulus and Montgomery
    /// constants, an EC point), not once per token.
    struct CachedVerifier {
        alg: Algorithm,
        key: Arc<signature::ParsedPublicKey>,
    }

    impl jsonwebtoken::signature::Verifier<Vec<u8>> for CachedVerifier {
        fn verify(
            &self,
            msg: &[u8],
            sig: &Vec<u8>,
        ) -> std::result::Result<(), jsonwebtoken::signature::Error> {
            self.key
                .verify_sig(msg, sig)
                .map_err(jsonwebtoken::signature::Error::from_source)
        }
    }

    impl jsonwebtoken::crypto::JwtVerifier for CachedVerifier {
        fn algorithm(&self) -> Algorithm {
            self.alg
        }
    }

    /// The verifier of the provider, with the key parsed once per process for the algorithms
    /// rekey uses; anything else goes to the default provider as before.
    pub(crate) fn verifier(
        alg: &Algorithm,
        key: &jsonwebtoken::DecodingKey,
    ) -> Result<Box<dyn jsonwebtoken::crypto::JwtVerifier>> {
        let base = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory;
        let params: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            _ => return base(alg, key),
        };
        let jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
            return base(alg, key);
        };
        if key.family() != alg.family() {
            return base(alg, key);
        }
        let mut entries = verifiers()
            .lock()
            .map_err(|_| ErrorKind::InvalidKeyFormat)?;
        if let Some((_, parsed)) = entries.iter().find(|((a, b), _)| a == alg && b == bytes) {
            return Ok(Box::new(CachedVerifier {
                alg: *alg,
                key: parsed.clone(),
            }));
        }
        let Ok(parsed) = signature::ParsedPublicKey::new(params, bytes) else {
            return base(alg, key);
        };
        let parsed = Arc::new(parsed);
        entries.push(((*alg, bytes.clone()), parsed.clone()));
        Ok(Box::new(CachedVerifier {
            alg: *alg,
            key: parsed,
        }))
    }

    impl jsonwebtoken::signature::Signer<Vec<u8>> for Cached {
        fn try_sign(
            &self,
            msg: &[u8],
        ) -> std::result::Result<Vec<u8>, jsonwebtoken::signature::Error> {
            let failed = jsonwebtoken::signature::Error::new;
            match &*self.key {
                Key::Rsa(k) => {
                    let mut sig = vec![0; k.public_modulus_len()];
                    k.sign(
                        &signature::RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        msg,
                        &mut sig,
                    )
                    .map_err(|_| failed())?;
                    Ok(sig)
                }
                Key::Ec(k) => Ok(k
                    .sign(&SystemRandom::new(), msg)
                    .map_err(|_| failed())?
                    .as_ref()
                    .to_vec()),
                Key::Ed(k) => Ok(k.sign(msg).as_ref().to_vec()),
            }
        }
    }

    impl JwtSigner for Cached {
        fn algorithm(&self) -> Algorithm {
            self.alg
        }
    }
}
