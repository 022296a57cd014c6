//! One function per subcommand: each takes validated arguments and the run's instant, does its
//! work through the library, writes its output and returns the exit code.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};

use crate::cli::{PlanFormat, StatusFormat};
use crate::exit::Exit;
use crate::fleet::{self, CaSpec, Flaw, IdentitySpec, KeyFormat, San, window};
use crate::fsio;
use crate::keys::KeyAlg;
use crate::plan::Plan;
use crate::report;
use crate::survey::Survey;

/// Writes data to stdout. A closed pipe is not an error worth a message (see `main`).
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("failed to write to stdout")
}

pub fn status(
    root: &Path,
    as_of: DateTime<Utc>,
    format: StatusFormat,
    warn: TimeDelta,
) -> Result<Exit> {
    let survey = Survey::take(root, as_of)?;
    match format {
        StatusFormat::Table => emit(&report::status_table(&survey))?,
        StatusFormat::Json => emit(&report::status_json(&survey))?,
    }
    Ok(survey.attention(Some(warn)).into())
}

pub fn plan(
    root: &Path,
    as_of: DateTime<Utc>,
    format: PlanFormat,
    output: Option<&Path>,
) -> Result<Exit> {
    let survey = Survey::take(root, as_of)?;
    let plan = Plan::from_survey(&survey);
    let text = match format {
        PlanFormat::Toml => plan.to_toml(),
        PlanFormat::Json => plan.to_json(),
    };
    match output {
        Some(path) => fsio::write_atomic(path, text.as_bytes(), 0o644)?,
        None => emit(&text)?,
    }
    eprint!("{}", report::plan_summary(&survey));
    Ok(survey.attention(None).into())
}

/// The marker that says a directory was built by `rekey demo` and may be rebuilt.
const DEMO_MARKER: &str = ".rekey-demo";

pub fn demo(dir: &Path, now: DateTime<Utc>) -> Result<Exit> {
    prepare_demo_dir(dir)?;
    let (ca, identities) = demo_fleet(now);
    fleet::write_fleet(dir, &ca, &identities)?;
    std::fs::write(
        dir.join(DEMO_MARKER),
        b"built by rekey demo; safe to delete\n",
    )
    .with_context(|| format!("failed to mark {} as a demo fleet", dir.display()))?;
    let survey = Survey::take(dir, now)?;
    let shown = dir.display();
    emit(&format!(
        "Built a demo fleet of {} identities in {shown}\n\n$ rekey status --root {shown}\n{}\n\
         $ rekey plan --root {shown}   (its summary; the plan itself goes to stdout)\n{}\n\
         Next: `rekey plan --root {shown}` for the full plan, \
         `rekey status --root {shown} --format json` for pipelines.\n",
        identities.len(),
        report::status_table(&survey),
        report::plan_summary(&survey),
    ))?;
    Ok(Exit::Ok)
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

/// The demo fleet: the reference services on three nodes and `mgmt`, in every state of DESIGN §3.
pub fn demo_fleet(now: DateTime<Utc>) -> (CaSpec, Vec<IdentitySpec>) {
    let days = TimeDelta::days;
    let ca = CaSpec {
        alg: KeyAlg::P256,
        common_name: "rekey demo CA".to_string(),
        window: window(now - days(400), 3650),
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
