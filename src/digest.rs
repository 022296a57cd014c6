//! SHA-256 digests: of credential files (the plan's and the journal's `sha256`) and of the CA
//! certificate and the policy. One type with one text form, lowercase hex, parsed once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// Parses exactly 64 hex digits (either case); anything else is `None`.
    pub(crate) fn parse(text: &str) -> Option<Digest> {
        let mut bytes = [0u8; 32];
        if text.len() != 64 {
            return None;
        }
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Digest(bytes))
    }

    /// The lowercase hex form.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A digest computed as the bytes pass, a piece at a time (a plan file read as a stream).
#[derive(Default)]
pub(crate) struct Running(sha2::Sha256);

impl Running {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of every byte passed.
    pub(crate) fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", self.hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a SHA-256 digest (64 hex digits)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn parses_only_whole_hex_digests() {
        let empty = Digest::of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases = [
            ("lowercase", hex.to_string(), Some(empty)),
            ("uppercase", hex.to_uppercase(), Some(empty)),
            ("short", hex[..63].to_string(), None),
            ("long", format!("{hex}0"), None),
            ("not hex", hex.replace('e', "g"), None),
            ("empty", String::new(), None),
        ];
        for (name, text, want) in cases {
            assert_eq!(Digest::parse(&text), want, "{name}");
        }
        assert_eq!(empty.to_string(), hex);
    }
}
