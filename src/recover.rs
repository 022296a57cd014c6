//! `rekey recover`: rotate identities whose token expired (state `recover`), only those a person
//! selected, with a reason recorded line by line in `.rekey/audit.jsonl`.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::classify::{Action, stamp};
use crate::exit::Exit;
use crate::plan;
use crate::rotate::{self, Job, WriteOptions};
use crate::runs;
use crate::survey::{Identity, Survey};

/// Which identities the operator named. Selectors combine: `--node n2 --service kms` is one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    pub nodes: Vec<String>,
    pub services: Vec<String>,
    pub all: bool,
}

impl Selection {
    pub fn matches(&self, node: &str, service: &str) -> bool {
        let node_ok = self.nodes.is_empty() || self.nodes.iter().any(|n| n == node);
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == service);
        self.all || (!(self.nodes.is_empty() && self.services.is_empty()) && node_ok && service_ok)
    }
}

fn needs_recover(i: &Identity) -> bool {
    i.credentials()
        .any(|c| c.verdict.state.action() == Action::Recover)
}

/// The operator's name: `--operator`, else the login name.
pub fn operator_name(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

pub struct Request {
    pub selection: Selection,
    pub reason: String,
    pub operator: String,
    pub yes: bool,
}

pub fn recover(
    root: &Path,
    as_of: DateTime<Utc>,
    req: Request,
    opts: &WriteOptions,
) -> Result<Exit> {
    if req.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why these identities are recovered");
    }
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("failed to open fleet root {}", root.display()))?;
    let _lock = if req.yes {
        Some(rotate::begin_writing(&root)?)
    } else {
        None
    };
    let survey = Survey::take(&root, as_of)?;
    let chosen: Vec<&Identity> = survey
        .identities
        .iter()
        .filter(|i| needs_recover(i) && req.selection.matches(&i.node, &i.service))
        .collect();
    if chosen.is_empty() {
        eprintln!("rekey: no identity in state recover matches the selection; nothing to do");
        return Ok(Exit::Ok);
    }
    for i in &chosen {
        let reason = i
            .credentials()
            .map(|c| c.verdict.reason.as_str())
            .next()
            .unwrap_or_default();
        eprintln!(
            "{} {}/{}: {reason}",
            if req.yes {
                "recovering"
            } else {
                "would recover"
            },
            i.node,
            i.service
        );
    }
    if !req.yes {
        eprintln!(
            "rekey: nothing was written; add --yes to recover these {} identities",
            chosen.len()
        );
        return Ok(Exit::Ok);
    }
    let targets = rotate::targets(plan::identities(&survey), Action::Recover)?
        .into_iter()
        .filter(|t| {
            chosen
                .iter()
                .any(|i| i.node == t.node && i.service == t.service)
        })
        .collect();
    let job = Job {
        root: &root,
        ca: &survey.ca,
        keys: survey.policy.keys,
        validity_days: survey.policy.validity_days,
        as_of,
        command: "recover",
        targets,
        verify_again: false,
        reason: Some(req.reason.clone()),
        operator: Some(req.operator.clone()),
    };
    // The request is audited before anything is written, so that even a recovery cut short by a
    // crash (and finished by the next writer's replay) has its who, when and why on record.
    let requested: Vec<serde_json::Value> = job
        .targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "time": stamp(opts.started),
                "event": "requested",
                "operator": req.operator,
                "node": t.node,
                "service": t.service,
                "reason": req.reason,
            })
        })
        .collect();
    runs::audit(&root, &requested)?;
    let (report, exit) = rotate::execute(job, opts)?;
    if let Some(report) = report {
        let lines: Vec<serde_json::Value> = report
            .identities
            .iter()
            .map(|i| {
                serde_json::json!({
                    "time": stamp(opts.started),
                    "event": "recovered",
                    "as_of": report.as_of,
                    "run_id": report.run_id,
                    "operator": req.operator,
                    "node": i.node,
                    "service": i.service,
                    "outcome": i.outcome,
                    "changed": i.files.iter().map(|f| serde_json::json!({
                        "file": f.name, "old_sha256": f.old_sha256, "new_sha256": f.new_sha256,
                    })).collect::<Vec<_>>(),
                    "reason": req.reason,
                    "detail": i.reason,
                })
            })
            .collect();
        runs::audit(&root, &lines)?;
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::Selection;

    #[test]
    fn selectors_combine() {
        let sel = |nodes: &[&str], services: &[&str], all| Selection {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
            all,
        };
        let cases = [
            ("node only", sel(&["n2"], &[], false), [true, true, false]),
            (
                "service only",
                sel(&[], &["kms"], false),
                [true, false, true],
            ),
            (
                "node and service: one identity",
                sel(&["n2"], &["kms"], false),
                [true, false, false],
            ),
            ("all", sel(&[], &[], true), [true, true, true]),
            ("nothing", sel(&[], &[], false), [false, false, false]),
        ];
        for (name, s, want) in cases {
            let got = [
                s.matches("n2", "kms"),
                s.matches("n2", "csi"),
                s.matches("n3", "kms"),
            ];
            assert_eq!(got, want, "{name}");
        }
    }
}
