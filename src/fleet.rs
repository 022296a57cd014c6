//! Builds fleets on disk: a CA of any supported key type and identities in any state of docs/design.md §3,
//! dated relative to a given instant, with deliberate flaws for tests. Tests, the benchmark and
//! `rekey demo` all use it; rekey's own commands never do.
//!
//! Every key here is generated fresh and is for testing only. Files are written plainly, not
//! durably: a generated fleet is scratch data, and the benchmark builds 10^5 identities.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::ca::jwt_alg_for;
use crate::inspect::Window;
use crate::keys::{KeyAlg, KeyFormat, encode_key, generate_key};
use crate::token::{self, Claims};

/// The CA to create.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub alg: KeyAlg,
    pub common_name: String,
    pub window: Window,
    /// Key file encoding of `ca/ca.key`.
    pub key_format: KeyFormat,
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
    #[cfg_attr(not(feature = "testkit"), expect(dead_code, reason = "the hostile catalog uses it"))]
    Uri(String),
}

/// Something deliberately wrong with an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Certificate signed by another key under the same CA name.
    ForeignCaCert,
    /// `key.pem` holds a different key.
    KeyMismatch,
    /// `cert.pem` cut off half-way.
    TruncatedCert,
    /// `cert.pem` followed by a second certificate.
    TwoCerts,
    /// `cert.pem` is a symbolic link to a valid certificate outside the fleet.
    CertSymlink,
    /// Token with `alg: none` and no signature.
    TokenAlgNone,
    /// Token HS256-signed with the CA public key as the secret.
    TokenHmac,
    /// Token signed by another key.
    TokenForged,
    /// Token whose `sub` names another identity.
    TokenWrongSub,
    /// A file larger than 1 MiB as the token.
    TokenOversized,
}

/// One identity to create.
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    pub node: String,
    pub service: String,
    pub key_alg: KeyAlg,
    pub(crate) key_format: KeyFormat,
    pub(crate) cert: Option<Window>,
    pub(crate) write_key: bool,
    pub token: Option<Window>,
    pub(crate) sans: Vec<San>,
    pub flaw: Option<Flaw>,
}

impl IdentitySpec {
    /// A P-256 identity with a certificate, key and token, both valid over `window`.
    pub fn new(node: &str, service: &str, window: Window) -> IdentitySpec {
        IdentitySpec {
            node: node.to_string(),
            service: service.to_string(),
            key_alg: KeyAlg::P256,
            key_format: KeyFormat::Pkcs8,
            cert: Some(window),
            write_key: true,
            token: Some(window),
            sans: vec![San::Dns(format!("{service}.{node}.fleet.internal"))],
            flaw: None,
        }
    }
}

/// A CA able to sign certificates and tokens for generated fleets.
pub struct Generator {
    common_name: String,
    alg: KeyAlg,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    signer: token::Signer,
    ca_public: Vec<u8>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generator({:?}, [secret key elided])", self.common_name)
    }
}

/// The window `[start, start + days)`.
pub fn window(start: DateTime<Utc>, days: i64) -> Window {
    Window {
        not_before: start,
        not_after: start + chrono::TimeDelta::days(days),
    }
}

impl Generator {
    pub fn new(spec: &CaSpec) -> Result<Generator> {
        let key = generate_key(spec.alg)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "rekey test fleet");
        dn.push(DnType::CommonName, spec.common_name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = to_offset(spec.window.not_before)?;
        params.not_after = to_offset(spec.window.not_after)?;
        let cert = params
            .self_signed(&key)
            .context("failed to self-sign the CA")?;
        let key_pem = encode_key(&key, spec.alg, spec.key_format)?;
        let signer = token::Signer::from_pem(key_pem.as_bytes(), jwt_alg_for(spec.alg))?;
        let ca_public = key.public_key_raw().to_vec();
        Ok(Generator {
            common_name: spec.common_name.clone(),
            alg: spec.alg,
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
            signer,
            ca_public,
        })
    }

    /// Writes `ca/ca.crt` and `ca/ca.key` (0600) under `root`.
    pub fn write_ca(&self, root: &Path) -> Result<()> {
        let dir = root.join("ca");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        write(&dir.join("ca.crt"), self.cert_pem.as_bytes(), 0o644)?;
        write(&dir.join("ca.key"), self.key_pem.as_bytes(), 0o600)
    }

    /// Writes `ca/bundle.pem` (this CA alone, as in a steady fleet) and each identity's trust
    /// file `ca.pem`, equal to it (docs/design.md §1), for a fleet a CA rotation can be walked
    /// through.
    pub fn write_trust_files(&self, root: &Path, identities: &[IdentitySpec]) -> Result<()> {
        let bundle = crate::ca::bundle_text([self.cert_pem.as_str()]);
        write(&root.join("ca").join("bundle.pem"), bundle.as_bytes(), 0o644)?;
        for spec in identities {
            let dir = crate::names::nodes_dir(root)
                .join(&spec.node)
                .join(&spec.service);
            write(&dir.join("ca.pem"), bundle.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// Signs a token for `sub` over `w`.
    pub(crate) fn token(&self, sub: &str, w: Window) -> Result<String> {
        self.signer.sign(&Claims::new(
            &self.common_name,
            sub,
            w.not_before,
            w.not_after,
        )?)
    }

    /// Writes one identity's directory under `root/nodes`.
    pub(crate) fn write_identity(&self, root: &Path, spec: &IdentitySpec) -> Result<()> {
        // Not an IdentityId: a hostile fleet has names rekey must refuse.
        let dir = crate::names::nodes_dir(root)
            .join(&spec.node)
            .join(&spec.service);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let sub = format!("{}/{}", spec.node, spec.service);
        let flaw = spec.flaw;
        if let Some(w) = spec.cert {
            let key = generate_key(spec.key_alg)?;
            let mut cert_pem = if flaw == Some(Flaw::ForeignCaCert) {
                let foreign = Generator::new(&CaSpec {
                    alg: KeyAlg::P256,
                    common_name: self.common_name.clone(),
                    window: w,
                    key_format: KeyFormat::Pkcs8,
                })?;
                foreign.leaf(&key, &sub, spec, w)?
            } else {
                self.leaf(&key, &sub, spec, w)?
            };
            match flaw {
                Some(Flaw::TruncatedCert) => cert_pem.truncate(cert_pem.len() / 2),
                Some(Flaw::TwoCerts) => cert_pem = format!("{cert_pem}{}", self.cert_pem),
                _ => {}
            }
            if flaw == Some(Flaw::CertSymlink) {
                let outside = root.join("outside");
                std::fs::create_dir_all(&outside)?;
                let name = format!("{}-{}.pem", spec.node, spec.service);
                write(&outside.join(&name), cert_pem.as_bytes(), 0o644)?;
                let relative = Path::new("../../../outside").join(&name);
                std::os::unix::fs::symlink(relative, dir.join("cert.pem"))?;
            } else {
                write(&dir.join("cert.pem"), cert_pem.as_bytes(), 0o644)?;
            }
            if spec.write_key {
                let key_pem = if flaw == Some(Flaw::KeyMismatch) {
                    encode_key(&generate_key(spec.key_alg)?, spec.key_alg, spec.key_format)?
                } else {
                    encode_key(&key, spec.key_alg, spec.key_format)?
                };
                write(&dir.join("key.pem"), key_pem.as_bytes(), 0o600)?;
            }
        }
        if let Some(w) = spec.token {
            let text = match flaw {
                Some(Flaw::TokenAlgNone) => alg_none_token(&self.common_name, &sub, w)?,
                Some(Flaw::TokenHmac) => self.hmac_token(&sub, w)?,
                Some(Flaw::TokenForged) => Generator::new(&CaSpec {
                    alg: self.alg,
                    common_name: self.common_name.clone(),
                    window: w,
                    key_format: KeyFormat::Pkcs8,
                })?
                .token(&sub, w)?,
                Some(Flaw::TokenWrongSub) => self.token("elsewhere/other", w)?,
                Some(Flaw::TokenOversized) => "a".repeat(1024 * 1024 + 1),
                _ => self.token(&sub, w)?,
            };
            write(
                &dir.join("token.jwt"),
                format!("{text}\n").as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    fn leaf(&self, key: &KeyPair, sub: &str, spec: &IdentitySpec, w: Window) -> Result<String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "rekey test fleet");
        dn.push(DnType::OrganizationalUnitName, spec.node.as_str());
        dn.push(DnType::CommonName, sub);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = spec
            .sans
            .iter()
            .map(|s| {
                Ok(match s {
                    San::Dns(d) => SanType::DnsName(d.as_str().try_into()?),
                    San::Ip(ip) => SanType::IpAddress(*ip),
                    San::Uri(u) => SanType::URI(u.as_str().try_into()?),
                })
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.serial_number = Some(random_serial()?);
        params.not_before = to_offset(w.not_before)?;
        params.not_after = to_offset(w.not_after)?;
        Ok(params
            .signed_by(key, &self.issuer)
            .context("failed to sign a certificate")?
            .pem())
    }

    fn hmac_token(&self, sub: &str, w: Window) -> Result<String> {
        let claims = Claims::new(&self.common_name, sub, w.not_before, w.not_after)?;
        let key = jsonwebtoken::EncodingKey::from_secret(&self.ca_public)?;
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}

fn alg_none_token(iss: &str, sub: &str, w: Window) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": iss, "sub": sub, "iat": w.not_before.timestamp(), "nbf": w.not_before.timestamp(),
        "exp": w.not_after.timestamp(), "jti": token::random_jti()?,
    });
    Ok(format!(
        "{header}.{}.",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ))
}

/// Creates a whole fleet: the CA, then the identities in parallel.
pub fn write_fleet(root: &Path, ca: &CaSpec, identities: &[IdentitySpec]) -> Result<Generator> {
    let generator = Generator::new(ca)?;
    generator.write_ca(root)?;
    std::fs::create_dir_all(crate::names::nodes_dir(root))?;
    identities
        .par_iter()
        .try_for_each(|spec| generator.write_identity(root, spec))?;
    Ok(generator)
}

fn random_serial() -> Result<SerialNumber> {
    Ok(SerialNumber::from_slice(&crate::issue::random_serial()?))
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).context("date out of range")
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}
