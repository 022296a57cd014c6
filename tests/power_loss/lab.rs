//! The fleet the power is cut under: 120 identities in every key type, some owned by
//! their service's user, some with an expired token; and where hooks leave a line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

pub type Snapshot = BTreeMap<String, (Vec<u8>, u32)>;

/// The fleet: identities in every key type, a tenth of them with an expired token (for
/// `recover`), an eighth owned by their service's user. Every run works in one batch (up to
/// 512 identities), so more identities would only make each step longer, not add one.
pub const IDENTITIES: usize = 120;

/// A lab: the backing directory (the "disk"), the mount point, and where hooks leave a line.
pub struct Lab {
    pub backing: tempfile::TempDir,
    pub mount: tempfile::TempDir,
    pub hooks: PathBuf,
    _outside: tempfile::TempDir,
    pub ids: Vec<String>,
}

impl Lab {
    pub fn root(&self) -> PathBuf {
        self.backing.path().join("fleet")
    }

    pub fn deploy_hook(&self) -> String {
        format!(
            "echo \"$REKEY_NODE/$REKEY_SERVICE\" >> {}/deploy.log",
            self.hooks.display()
        )
    }

    /// A lab whose fleet `make` builds in the (empty) fleet root, returning its identities'
    /// directories (`nodes/<node>/<service>`).
    pub fn with_fleet(make: impl FnOnce(&Path) -> Vec<String>) -> Lab {
        let backing = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = backing.path().join("fleet");
        std::fs::create_dir(&root).unwrap();
        let ids = make(&root);
        Lab {
            backing,
            mount: tempfile::tempdir().unwrap(),
            hooks: outside.path().to_path_buf(),
            _outside: outside,
            ids,
        }
    }

    pub fn post_hook(&self) -> String {
        format!(
            "echo \"$REKEY_RUN_ID\" >> {}/post.log",
            self.hooks.display()
        )
    }
}

pub fn lab() -> Lab {
    Lab::with_fleet(fleet)
}

/// The fleet of [`IDENTITIES`] at `root`.
fn fleet(root: &Path) -> Vec<String> {
    let specs: Vec<IdentitySpec> = (0..IDENTITIES)
        .map(|i| {
            let mut s = IdentitySpec::new(
                &format!("node-{:02}", i % 12),
                &format!("svc-{i:03}"),
                issued(30),
            );
            s.key_alg = match i % 4 {
                0 => KeyAlg::P256,
                1 => KeyAlg::P384,
                2 => KeyAlg::Ed25519,
                // RSA keys are slow to make, and every rotating run makes them again: two.
                _ if i % 60 == 3 => KeyAlg::Rsa { bits: 2048 },
                _ => KeyAlg::P256,
            };
            if i % 10 == 9 {
                s.token = Some(issued(120)); // expired: the identity needs recover
            }
            s
        })
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &specs);
    // An eighth of the identities belong to their service's user: their backups are copies
    // (synced), not links (a hard link would let the owner change the backup).
    for s in specs.iter().skip(5).step_by(8) {
        for f in FILES {
            let file = root.join("nodes").join(&s.node).join(&s.service).join(f);
            std::os::unix::fs::chown(file, Some(1000), Some(1000)).unwrap();
        }
    }
    specs
        .iter()
        .map(|s| format!("nodes/{}/{}", s.node, s.service))
        .collect()
}

pub fn newest_run(root: &Path) -> String {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.pop().unwrap()
}
