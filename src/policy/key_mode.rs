//! What a reissue does with the identity's key pair (`keys` in the policy).

use serde::{Deserialize, Serialize};

/// What to do with the key pair when a certificate is reissued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyMode {
    /// A new key pair of the same algorithm, when `key.pem` is present.
    Rotate,
    /// Keep the existing public key.
    Reuse,
}

impl KeyMode {
    /// `rotate` or `reuse`, as a file writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyMode::Rotate => "rotate",
            KeyMode::Reuse => "reuse",
        }
    }
}
