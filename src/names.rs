//! Node and service names (docs/design.md §1): `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`. A name that passes can
//! be joined to a path without escaping its parent. The identity they name, and where it lives:
//! `nodes/<node>/<service>` is built here and nowhere else.

use std::path::{Path, PathBuf};

/// `<root>/nodes`: the directory of the fleet root `root` that holds the node directories. The
/// one place the name `nodes` is joined to a path.
pub(crate) fn nodes_dir(root: &Path) -> PathBuf {
    root.join("nodes")
}

/// Whether `name` is a valid node or service name.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() <= 62
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => false,
    }
}

/// One identity of the fleet: `nodes/<node>/<service>`, both names valid. Ordered by node, then
/// service: the order of plans, reports and batches. Collections of work are keyed by it, so
/// that no identity can be acted on twice in one run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityId {
    node: String,
    service: String,
}

impl IdentityId {
    /// The identity `node/service`, or `None` when either is not a valid name.
    pub fn new(node: &str, service: &str) -> Option<IdentityId> {
        (is_valid(node) && is_valid(service)).then(|| IdentityId {
            node: node.to_string(),
            service: service.to_string(),
        })
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// `nodes/<node>/<service>`: the identity's directory relative to the fleet root, as
    /// messages, reports and hooks name it.
    pub(crate) fn relative(&self) -> PathBuf {
        self.dir_in(Path::new(""))
    }

    /// `<root>/nodes/<node>/<service>`: the identity's directory under the fleet root `root`.
    pub(crate) fn dir_in(&self, root: &Path) -> PathBuf {
        let mut dir = nodes_dir(root);
        dir.reserve(self.node.len() + self.service.len() + 2);
        dir.push(&self.node);
        dir.push(&self.service);
        dir
    }
}

impl std::fmt::Display for IdentityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn names_follow_the_layout_rule() {
        let long_ok = format!("a{}", "b".repeat(62));
        let too_long = format!("a{}", "b".repeat(63));
        let cases = [
            ("simple", "node-01", true),
            ("dots and underscores", "cert.manager_2", true),
            ("63 characters", long_ok.as_str(), true),
            ("64 characters", too_long.as_str(), false),
            ("empty", "", false),
            ("leading dot", ".hidden", false),
            ("parent", "..", false),
            ("slash", "a/b", false),
            ("leading dash", "-x", false),
            ("space", "a b", false),
            ("non-ascii", "nöde", false),
        ];
        for (name, input, want) in cases {
            assert_eq!(is_valid(input), want, "{name}");
        }
    }

    #[test]
    fn an_identity_lives_under_nodes() {
        let id = super::IdentityId::new("n1", "svc").unwrap();
        assert_eq!(id.relative(), std::path::Path::new("nodes/n1/svc"));
        assert_eq!(
            id.dir_in(std::path::Path::new("/fleet")),
            std::path::Path::new("/fleet/nodes/n1/svc")
        );
        assert_eq!(id.to_string(), "n1/svc");
    }
}
