//! One identity as classified: its credentials' verdicts, windows and digests, and what the
//! identity as a whole asks for. Values only: built by [`assess`] from an inspected identity.

use crate::classify::{self, Action, Context, Kind, State, Verdict, Whose};
use crate::inspect::{self, Window};
use crate::keys::KeyAlg;
use crate::names::IdentityId;

/// One credential as classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessed {
    pub(crate) kind: Kind,
    pub(crate) verdict: Verdict,
    pub(crate) window: Option<Window>,
    pub(crate) sha256: Option<crate::digest::Digest>,
    pub(crate) self_rotates: bool,
    pub(crate) key_alg: Option<KeyAlg>,
    /// Subject CN and serial of a certificate read through (for the metrics' labels).
    pub(crate) names: Option<inspect::CertNames>,
    /// Which trusted CA signed it, when it could be judged.
    pub(crate) signed_by: Option<crate::ca::Role>,
    /// A certificate whose `key.pem` this user may not read: the key match was not checked.
    pub(crate) key_not_readable: bool,
}

impl Assessed {
    /// Whether this user could read the credential's file (docs/design.md §5).
    pub(crate) fn readable(&self) -> bool {
        self.verdict.state != State::Unreadable
    }

    /// What could not be checked because a file is not readable by this user.
    pub(crate) fn not_checked(&self) -> &'static [&'static str] {
        match (self.kind, self.readable(), self.key_not_readable) {
            (Kind::Cert, false, _) => &["expiry", "issuer", "key match"],
            (Kind::Token, false, _) => &["expiry", "signature"],
            (Kind::Cert, true, true) => &["key match"],
            _ => &[],
        }
    }

    /// Files of this credential present but not readable by this user (its own, or the key
    /// of a certificate read).
    pub(crate) fn unreadable_files(&self) -> usize {
        usize::from(!self.readable()) + usize::from(self.key_not_readable)
    }
}

/// One identity as classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Which identity: made once, by `scan`, from the names it listed.
    pub(crate) id: IdentityId,
    /// The directory judged (device and inode), when it was read: a writer acts on it only.
    pub(crate) dir: Option<crate::fsio::FileId>,
    pub(crate) cert: Option<Assessed>,
    pub(crate) token: Option<Assessed>,
}

impl Identity {
    pub(crate) fn node(&self) -> &str {
        self.id.node()
    }

    pub(crate) fn service(&self) -> &str {
        self.id.service()
    }

    pub(crate) fn credentials(&self) -> impl Iterator<Item = &Assessed> {
        self.cert.iter().chain(self.token.iter())
    }

    /// Whether the identity is left for a person, as `recover` or `problem`, with its own
    /// reasons (not those spread from its other credential), each once.
    pub(crate) fn needs_person(&self) -> Option<(Stuck, String)> {
        let mut tag = None;
        let mut reasons: Vec<&str> = Vec::new();
        for c in self.credentials() {
            match c.verdict.state {
                State::Recover => tag = tag.or(Some(Stuck::Recover)),
                State::Problem => tag = Some(Stuck::Problem),
                _ => continue,
            }
            let own = c.verdict.whose == Whose::Own;
            if own && !reasons.contains(&c.verdict.reason.as_str()) {
                reasons.push(&c.verdict.reason);
            }
        }
        tag.map(|tag| (tag, reasons.join("; ")))
    }

    /// What the identity as a whole asks for: its most demanding credential's action.
    pub(crate) fn action(&self) -> Action {
        let rank = |a: Action| match a {
            Action::Keep => 0,
            Action::Rotate => 1,
            Action::Recover => 2,
            Action::Skip => 3,
        };
        self.credentials()
            .map(|c| c.verdict.state.action())
            .max_by_key(|a| rank(*a))
            .unwrap_or(Action::Keep)
    }

    /// The identity's state: that of its most urgent credential.
    pub(crate) fn state(&self) -> State {
        self.credentials()
            .map(|c| c.verdict.state)
            .max_by_key(|s| s.urgency())
            .unwrap_or(State::Healthy)
    }
}

/// The identity `identity` as classified under `ctx` (its names and credentials moved, not
/// copied: this runs once per identity).
pub(crate) fn assess(identity: inspect::Inspected, ctx: &Context<'_>) -> Identity {
    let renewal = ctx.policy.renewal(identity.id.service());
    let (cert_verdict, token_verdict) = classify::classify(&identity, ctx);
    let build = |kind, cred: Option<inspect::Credential>, verdict: Option<Verdict>, self_rotates| {
        cred.zip(verdict).map(|(c, verdict)| Assessed {
            kind,
            verdict,
            window: c.stated,
            sha256: c.sha256,
            self_rotates,
            key_alg: c.key_alg,
            names: c.names,
            signed_by: c.signed_by,
            key_not_readable: c.key_not_readable,
        })
    };
    let inspect::Inspected { id, cert, token } = identity;
    Identity {
        id,
        dir: None,
        cert: build(Kind::Cert, cert, cert_verdict, renewal.self_renews_cert),
        token: build(Kind::Token, token, token_verdict, renewal.self_rotates_token),
    }
}

/// Why an identity is left for a person: rekey cannot move it on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stuck {
    /// It can no longer log in: only `rekey recover` acts.
    Recover,
    /// A problem: skipped until it is fixed.
    Problem,
}

impl Stuck {
    /// `recover` or `problem`, as the reports tag it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stuck::Recover => "recover",
            Stuck::Problem => "problem",
        }
    }
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
