//! The CA's signing side, loaded only by commands that write: the CA key as an rcgen issuer (for
//! certificates) and a token signer, both checked once at start.
//!
//! `rcgen::Issuer` checks nothing by itself: this module makes sure the key belongs to the CA
//! certificate (already checked by `ca`), that the CA is valid at the run date, and that the CA's
//! own subject survives rcgen's name handling byte for byte — otherwise every certificate issued
//! would name an issuer that does not exist.

mod successor;
#[cfg(test)]
mod tests;

pub(crate) use successor::{CaPair, Terms, successor, successor_name};

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, Issuer, KeyPair, PublicKeyData, SignatureAlgorithm};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::{Ca, KeyAccess};
use crate::fsio::{self, Slot};
use crate::issue;
use crate::keys::{self, KeyAlg};
use crate::pemblock;
use crate::token;

/// Everything needed to sign for the CA.
pub(crate) struct CaSigner {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) tokens: token::Signer,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaSigner([secret key elided])")
    }
}

/// The rcgen algorithm for a key type (RSA keys sign with SHA-256).
pub(crate) fn rcgen_alg(alg: KeyAlg) -> &'static SignatureAlgorithm {
    match alg {
        KeyAlg::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        KeyAlg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// An existing public key, for reissuing a certificate without changing its key.
#[derive(Debug, Clone)]
pub(crate) struct ReusedKey {
    pub(crate) alg: KeyAlg,
    pub(crate) bits: Vec<u8>,
}

impl PublicKeyData for ReusedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen_alg(self.alg)
    }
}

/// Loads the CA key of `root` for signing at `now`.
pub(crate) fn load(root: &Path, ca: &Ca, now: DateTime<Utc>) -> Result<CaSigner> {
    let ca_dir = crate::ca::CaDir::of(root);
    let (key_path, cert_path) = (ca_dir.active().key, ca_dir.active().cert);
    let key_pem = match fsio::read_credential(&key_path) {
        Slot::Present(bytes) => bytes,
        Slot::Absent => bail!(
            "CA key {} is missing: rekey needs it to write",
            key_path.display()
        ),
        Slot::NotReadable | Slot::Unusable(_) if matches!(ca.key, KeyAccess::Present { readable: false, .. }) => {
            bail!(
                "CA key {} is not readable by this user: writing commands need it (status and \
                 plan do not); run as the key's owner",
                key_path.display()
            )
        }
        Slot::Unusable(why) => bail!("CA key {} {why}", key_path.display()),
        Slot::NotReadable => bail!("CA key {} {}", key_path.display(), fsio::NOT_READABLE),
    };
    let cert_pem = match fsio::read_credential(&cert_path) {
        Slot::Present(bytes) => bytes,
        _ => bail!(
            "CA certificate {} changed while rekey ran",
            cert_path.display()
        ),
    };
    if ca.not_after <= now {
        bail!(
            "the CA expired on {}: renew it before rotating anything",
            ca.not_after.format("%Y-%m-%d")
        );
    }
    if ca.not_before > now {
        bail!(
            "the CA is not valid until {}",
            ca.not_before.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    from_pem(&cert_pem, &key_pem, ca)
        .with_context(|| format!("CA in {} cannot sign", ca_dir.path().display()))
}

/// Builds the signer from the CA certificate and key (PEM), checking that it reproduces the CA.
pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca: &Ca) -> Result<CaSigner> {
    let block = pemblock::single(cert_pem).map_err(|e| anyhow::anyhow!("ca.crt {e}"))?;
    let (_, cert) =
        X509Certificate::from_der(&block.der).map_err(|e| anyhow::anyhow!("ca.crt: {e}"))?;
    let public =
        keys::public_from_private_pem(key_pem).map_err(|e| anyhow::anyhow!("ca.key {e}"))?;
    if public != ca.public {
        bail!("ca.key does not belong to ca.crt");
    }
    let key_text = std::str::from_utf8(key_pem).context("ca.key is not PEM text")?;
    let key = KeyPair::from_pem_and_sign_algo(key_text, rcgen_alg(ca.public.alg))
        .map_err(|e| anyhow::anyhow!("ca.key cannot be used for signing: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name =
        issue::rebuild_name(cert.subject()).map_err(|e| anyhow::anyhow!("ca.crt {e}"))?;
    let signer = CaSigner {
        issuer: Issuer::new(params, key),
        tokens: token::Signer::from_pem(key_pem, ca.jwt_alg)?.with_kid(ca.key_id().hex()),
    };
    probe(&signer, ca)?;
    Ok(signer)
}

/// Issues one throwaway certificate and checks that it chains to the CA as it is on disk.
fn probe(signer: &CaSigner, ca: &Ca) -> Result<()> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("failed to generate a probe key")?;
    let mut params = CertificateParams::default();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x7f; 8]));
    let der = params
        .signed_by(&key, &signer.issuer)
        .context("the CA key cannot sign")?
        .der()
        .to_vec();
    let (_, probe) =
        X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("probe certificate: {e}"))?;
    if probe.issuer().as_raw() != ca.subject_der.as_slice() {
        bail!(
            "ca.crt has a subject that cannot be reproduced exactly: certificates issued would not chain to it"
        );
    }
    if !ca.issued(&probe) {
        bail!("ca.key does not produce signatures that verify with ca.crt");
    }
    Ok(())
}
