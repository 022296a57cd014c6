//! `rekey ca status`: the stage of a CA rotation and its CAs (the one that signs, and the one
//! trusted beside it), as a table or JSON. Reads only certificates; never a key.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::ca::{self, Ca, CaDir, Role, Stage};
use crate::exit::Exit;

/// How `ca status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug)]
pub struct Options {
    pub root: PathBuf,
    pub format: Format,
}

#[derive(Serialize)]
struct Shown {
    stage: Stage,
    cas: Vec<CaShown>,
    bundle: String,
}

#[derive(Serialize)]
struct CaShown {
    role: Role,
    common_name: String,
    algorithm: String,
    not_before: String,
    not_after: String,
    sha256: String,
    key_id: String,
    path: String,
}

fn shown(role: Role, ca: &Ca, path: PathBuf) -> CaShown {
    CaShown {
        role,
        common_name: ca.common_name.clone(),
        algorithm: ca.public.alg.to_string(),
        not_before: crate::classify::stamp(ca.not_before),
        not_after: crate::classify::stamp(ca.not_after),
        sha256: ca.sha256.hex(),
        key_id: ca.key_id().hex(),
        path: path.display().to_string(),
    }
}

pub(crate) fn status(o: &Options) -> Result<Exit> {
    let root = crate::survey::open_root(&o.root)?;
    let dir = CaDir::of(&root);
    let active = ca::load(&root)?;
    let rotation = ca::load_rotation(&root)?;
    let mut cas = vec![shown(Role::Active, &active, dir.active().cert)];
    let stage = rotation.as_ref().map_or(Stage::Steady, |r| r.stage);
    if let Some(r) = &rotation {
        cas.push(shown(r.role(), &r.other, dir.of_role(r.role()).cert));
    }
    let out = Shown {
        stage,
        cas,
        bundle: dir.bundle().display().to_string(),
    };
    let text = match o.format {
        Format::Json => serde_json::to_string_pretty(&out)? + "\n",
        Format::Table => {
            let mut t = format!("CA rotation: {}\n", stage.name());
            for c in &out.cas {
                t.push_str(&format!(
                    "{:<9} {:?} ({}), {} to {}, key id {}, {}\n",
                    c.role.as_str(),
                    c.common_name,
                    c.algorithm,
                    c.not_before,
                    c.not_after,
                    &c.key_id[..16],
                    c.path
                ));
            }
            t.push_str(&format!("bundle    {}\n", out.bundle));
            t
        }
    };
    crate::out::emit(&text)?;
    Ok(Exit::Ok)
}
