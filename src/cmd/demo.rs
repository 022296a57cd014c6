//! `rekey demo`: a small fleet dated relative to now, in every state of docs/design.md §3, shown
//! before and after a real rotation. The first thing a new user runs.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};

use super::emit;
use crate::exit::Exit;
use crate::fleet::{self, CaSpec, Flaw, IdentitySpec, San, window};
use crate::keys::{KeyAlg, KeyFormat};
use crate::report;
use crate::survey::Survey;
use crate::write::{self, Settings, WriteRun};

/// The marker that says a directory was built by `rekey demo` and may be rebuilt.
const DEMO_MARKER: &str = ".rekey-demo";

#[derive(Debug)]
pub struct Options {
    /// Where to build the demo fleet.
    pub dir: std::path::PathBuf,
    /// "Now" for the demo fleet's dates and its rotation.
    pub as_of: DateTime<Utc>,
    /// `--ca-days N`: a CA that ends N days after `as_of`, with `ca/bundle.pem` and every
    /// identity's `ca.pem`, so that a CA rotation can be walked through; `None`: a CA of ten
    /// years.
    pub ca_days: Option<u32>,
    /// How the rotation runs (its `started`: the wall clock when the process started).
    pub write: Settings,
}

/// `rekey demo`: build the demo fleet, show its status, rotate it, show its status again.
pub(crate) fn demo(o: &Options) -> Result<Exit> {
    let (dir, now) = (o.dir.as_path(), o.as_of);
    write::check_run_date(now, o.write.started)?;
    prepare_demo_dir(dir)?;
    let (ca, identities) = demo_fleet(now, o.ca_days);
    let generator = fleet::write_fleet(dir, &ca, &identities)?;
    if o.ca_days.is_some() {
        generator.write_trust_files(dir, &identities)?;
    }
    std::fs::write(
        dir.join(DEMO_MARKER),
        b"built by rekey demo; safe to delete\n",
    )
    .with_context(|| format!("failed to mark {} as a demo fleet", dir.display()))?;
    let root = crate::fsio::fleet_root(dir)?;
    let shown = root.display();
    let before = Survey::take(&root, now)?;
    let mut judged = before.judged();
    let table = report::status_table(&before.scope, &mut judged)?;
    let summary = report::plan_summary(&before.scope, judged.end(), 0)?;
    emit(&format!(
        "Built a demo fleet of {} in {shown}\n\n$ rekey status --root {shown}\n{}\n$ rekey rotate --root {shown}\n{}",
        crate::count::count(identities.len(), "identity", "identities"),
        table,
        summary,
    ))?;
    let run = WriteRun::begin(&root, now, &o.write)?;
    let survey = run.survey()?;
    let targets = write::due_targets(&survey, false);
    let rotated = write::rotate_due(run, &survey, targets)?;
    let after = Survey::take(&root, now)?;
    let table = report::status_table(&after.scope, &mut after.judged())?;
    emit(&format!(
        "(rotate exited {}: identities that need recover or have problems are left for a person)\n\n\
         $ rekey status --root {shown}\n{}\n\
         Try next:\n\
         \x20 rekey plan --root {shown}\n\
         \x20 rekey recover --root {shown} --all --reason \"demo\"    (shows what it would do; add --yes)\n\
         \x20 rekey runs --root {shown}\n\
         \x20 rekey rollback RUN_ID --root {shown}\n{}",
        rotated as u8,
        table,
        ca_walk(o.ca_days, &shown.to_string()),
    ))?;
    Ok(Exit::Ok)
}

/// With `--ca-days`, the four stages of a CA rotation to try next (docs/design.md §3a).
fn ca_walk(ca_days: Option<u32>, shown: &str) -> String {
    let Some(n) = ca_days else {
        return String::new();
    };
    format!(
        "\nIts CA ends in {}: walk a CA rotation through its four stages:\n\
         \x20 rekey ca begin --root {shown}     (a new CA in ca/next/, trusted beside the old one)\n\
         \x20 rekey ca switch --root {shown}    (the new CA signs; the old one is still trusted)\n\
         \x20 rekey rotate --root {shown}       (every credential reissued under the new CA)\n\
         \x20 rekey ca finish --root {shown}    (the old CA is trusted no more; its key removed)\n",
        crate::count::count(n as usize, "day", "days")
    )
}

fn prepare_demo_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to inspect {}", dir.display())),
        Ok(meta) if !meta.is_dir() => bail!("{} exists and is not a directory", dir.display()),
        Ok(_) => {
            let is_demo = dir.join(DEMO_MARKER).is_file();
            let empty = std::fs::read_dir(dir)?.next().is_none();
            if !is_demo && !empty {
                bail!(
                    "{} exists and is not a rekey demo fleet: refusing to overwrite it",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("failed to clear {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
}

/// The demo fleet: the reference services on three nodes and `mgmt`, in every state of docs/design.md §3.
/// Its CA began 400 days before `now` (before every credential) and ends `ca_days` after it, or
/// ten years after it began.
pub fn demo_fleet(now: DateTime<Utc>, ca_days: Option<u32>) -> (CaSpec, Vec<IdentitySpec>) {
    let days = TimeDelta::days;
    let ca = CaSpec {
        alg: KeyAlg::P256,
        common_name: "rekey demo CA".to_string(),
        window: window(
            now - days(400),
            ca_days.map_or(3650, |n| 400 + i64::from(n)),
        ),
        key_format: KeyFormat::Pkcs8,
    };
    let issued = |ago: i64| window(now - days(ago), 90);
    let id = |node: &str, service: &str, ago: i64| IdentitySpec::new(node, service, issued(ago));
    let mut ids = Vec::new();
    for (i, node) in ["node-01", "node-02", "node-03"].into_iter().enumerate() {
        let offset = i as i64 * 3;
        ids.push(id(node, "nodeagent", 20 + offset)); // cert renews itself: healthy; token due
        ids.push(id(node, "kva", 30 + offset));
        ids.push(id(node, "csi", 10 + offset));
    }
    ids.push(id("mgmt", "mocctl", 31)); // renews nothing: due
    let mut stalled = id("node-01", "kms", 80); // 10 of 90 days left: stalled
    stalled.token = Some(issued(25));
    ids.push(stalled);
    let mut fresh = id("node-02", "kms", 0);
    fresh.cert = Some(window(now - TimeDelta::hours(3), 90));
    fresh.token = fresh.cert;
    ids.push(fresh);
    let mut stalled_expired = id("node-02", "caph", 95); // renews itself, yet expired: stalled
    stalled_expired.token = Some(issued(40));
    ids.push(stalled_expired);
    let mut expired_cert = id("mgmt-standby", "mocctl", 92); // certificate expired, token valid
    expired_cert.token = Some(issued(35));
    ids.push(expired_cert);
    ids.push(id("node-03", "cloud-operator", 93)); // token expired: recover
    let mut mismatch = id("node-03", "cert-manager", 15);
    mismatch.flaw = Some(Flaw::KeyMismatch);
    ids.push(mismatch);
    let mut forged = id("node-01", "caph", 12);
    forged.flaw = Some(Flaw::TokenForged);
    ids.push(forged);
    let mut cert_only = id("node-01", "cloud-operator", 45);
    cert_only.token = None;
    cert_only.key_alg = KeyAlg::Ed25519;
    ids.push(cert_only);
    let mut token_only = id("node-02", "cert-manager", 33);
    token_only.cert = None;
    ids.push(token_only);
    let mut with_ip = id("node-03", "kms", 50);
    with_ip.sans.push(San::Ip([10, 0, 0, 3].into()));
    with_ip.key_alg = KeyAlg::P384;
    ids.push(with_ip);
    (ca, ids)
}
