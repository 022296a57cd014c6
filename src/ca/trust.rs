//! The CAs a fleet trusts while a CA rotation is under way: the one that signs (`ca/ca.crt`)
//! and the other one (`ca/next/ca.crt` after `begin`, `ca/previous/ca.crt` after `switch`). A
//! certificate verifies against either; a token against the CA its `kid` names or, without a
//! `kid` (tokens from before rekey wrote one), against each in turn.

use std::path::Path;

use anyhow::{Context, Result, bail};
use x509_parser::prelude::X509Certificate;

use super::cert::{Ca, from_pem};
use super::files::{CaDir, Role, Stage};
use crate::fsio::{self, Slot};

/// A CA rotation under way: its stage and the CA trusted beside the active one.
#[derive(Debug)]
pub(crate) struct Rotation {
    pub(crate) stage: Stage,
    pub(crate) other: Ca,
}

impl Rotation {
    /// The other CA's role: `next` after `begin`, `previous` after `switch`.
    pub(crate) fn role(&self) -> Role {
        match self.stage {
            Stage::Switched => Role::Previous,
            Stage::Begun | Stage::Steady => Role::Next,
        }
    }
}

/// The rotation `root`'s `ca/` shows, if one is under way, with the other CA's certificate
/// checked as `ca/ca.crt` is (never its key).
pub(crate) fn load_rotation(root: &Path) -> Result<Option<Rotation>> {
    let dir = CaDir::of(root);
    let stage = dir.stage().map_err(|e| anyhow::anyhow!("{e}"))?;
    let cert = match stage {
        Stage::Steady => return Ok(None),
        Stage::Begun => dir.next().cert,
        Stage::Switched => dir.previous().cert,
    };
    let pem = match fsio::read_credential(&cert) {
        Slot::Present(bytes) => bytes,
        Slot::Absent => bail!(
            "CA certificate {} is missing: a CA rotation is {} but its other CA is gone",
            cert.display(),
            stage.name()
        ),
        Slot::Unusable(why) => bail!("CA certificate {} {why}", cert.display()),
        Slot::NotReadable => bail!("CA certificate {} {}", cert.display(), fsio::NOT_READABLE),
    };
    let other = from_pem(&pem, None).with_context(|| format!("CA {} is unusable", cert.display()))?;
    Ok(Some(Rotation { stage, other }))
}

/// The CAs a credential may verify against, as the read side checks it.
#[derive(Debug, Clone, Copy)]
pub struct Trusted<'a> {
    pub(crate) active: &'a Ca,
    pub(crate) rotation: Option<&'a Rotation>,
}

impl<'a> Trusted<'a> {
    /// One CA, no rotation.
    #[cfg_attr(
        not(feature = "testkit"),
        expect(dead_code, reason = "the tests and fuzz targets use it")
    )]
    pub fn alone(active: &'a Ca) -> Trusted<'a> {
        Trusted {
            active,
            rotation: None,
        }
    }

    /// Each trusted CA with its role, the active one first.
    pub(crate) fn each(self) -> impl Iterator<Item = (Role, &'a Ca)> {
        std::iter::once((Role::Active, self.active))
            .chain(self.rotation.map(|r| (r.role(), &r.other)))
    }

    /// Which trusted CA issued `cert`, if any did.
    pub(crate) fn issuer_of(self, cert: &X509Certificate<'_>) -> Option<Role> {
        self.each().find(|(_, ca)| ca.issued(cert)).map(|(role, _)| role)
    }

    /// The trusted CA whose key id is `kid` (lowercase hex, as rekey writes it).
    pub(crate) fn by_key_id(self, kid: &str) -> Option<(Role, &'a Ca)> {
        self.each().find(|(_, ca)| ca.key_id().hex() == kid)
    }

    /// Whether more than one CA is trusted.
    pub(crate) fn is_rotating(self) -> bool {
        self.rotation.is_some()
    }
}
