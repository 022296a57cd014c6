//! Login tokens (DESIGN §2): compact JWS verified against the CA key with the one algorithm the
//! CA's key type fixes, and signed the same way.
//!
//! Token text is a secret: no error or value from here carries it, only what was wrong with it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::ca::{Ca, to_utc};

/// The claims of a rekey token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

impl Claims {
    /// Fresh claims for `sub` issued by `iss`, valid over `[not_before, not_after)`, with a new
    /// random `jti`.
    pub fn new(
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
pub fn verify(bytes: &[u8], ca: &Ca, sub: &str) -> Result<TokenInfo, String> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    if !text.iter().all(|b| b.is_ascii_graphic()) {
        return Err("is not one compact JWT (unexpected characters or lines)".to_string());
    }
    let mut validation = jsonwebtoken::Validation::new(ca.jwt_alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
    validation.set_issuer(&[&ca.common_name]);
    validation.sub = Some(sub.to_string());
    let data = jsonwebtoken::decode::<Claims>(text, ca.decoding_key(), &validation)
        .map_err(|err| describe(err.kind(), ca, sub))?;
    let claims = data.claims;
    if claims.jti.len() != 32
        || !claims
            .jti
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("has a jti that is not 128 bits of lowercase hex".to_string());
    }
    if claims.nbf > claims.exp {
        return Err("has nbf after exp".to_string());
    }
    Ok(TokenInfo {
        not_before: to_utc(claims.nbf),
        expires: to_utc(claims.exp),
    })
}

fn describe(kind: &ErrorKind, ca: &Ca, sub: &str) -> String {
    match kind {
        ErrorKind::InvalidSignature => "signature does not verify with the CA key".to_string(),
        ErrorKind::InvalidAlgorithm => format!("is not signed with {:?}", ca.jwt_alg),
        ErrorKind::InvalidIssuer => "was not issued by this CA (iss is wrong)".to_string(),
        ErrorKind::InvalidSubject => format!("sub does not name this identity ({sub})"),
        ErrorKind::MissingRequiredClaim(claim) => format!("has no numeric {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("has a malformed {claim} claim"),
        ErrorKind::Json(_) => format!(
            "has a malformed header or claims (alg must be {:?}; iat, nbf, exp numeric; jti a string)",
            ca.jwt_alg
        ),
        _ => "is not a valid compact JWT".to_string(),
    }
}

/// A token signer holding the CA private key.
pub struct Signer {
    alg: jsonwebtoken::Algorithm,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?}, [secret key elided])", self.alg)
    }
}

impl Signer {
    /// Builds a signer from the CA key in PEM (PKCS#8; PKCS#1 for RSA; SEC1 for EC).
    pub fn from_pem(key_pem: &[u8], alg: jsonwebtoken::Algorithm) -> Result<Signer> {
        use jsonwebtoken::Algorithm::*;
        let key = match alg {
            RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(key_pem),
            ES256 | ES384 => ec_pkcs8(key_pem, alg),
            EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(key_pem),
            _ => anyhow::bail!("rekey does not sign tokens with {alg:?}"),
        }
        .context("the CA key cannot sign tokens")?;
        Ok(Signer { alg, key })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let header = jsonwebtoken::Header::new(self.alg);
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
pub fn random_jti() -> Result<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    Ok(hex::encode(bytes))
}
