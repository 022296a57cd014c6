//! The plan (docs/design.md §5): the dry-run report that `apply` executes. Built from a survey, rendered
//! as TOML (by hand, so that each credential is one inline table as the contract shows) or JSON,
//! and parsed back with unknown fields refused (its schema and parsing: `plan::file`; validated
//! for `apply`: `plan::valid`, a file read as a stream: `plan::read`). Deterministic: same survey, same bytes. No secret is ever in it:
//! actions, reasons, dates and digests only.

use serde::Serialize;

use std::io::Write;

use crate::classify::{Action, stamp};
use crate::policy::KeyMode;

use std::cell::RefCell;

use crate::out::Spool;
use crate::survey::{Assessed, End, Identity, Judged, Scope};

mod file;
mod read;
mod valid;

pub use file::{Entry, Plan, PlanIdentity, PlanIssue, VERSION};
pub(crate) use read::{MAX_PLAN_BYTES, ReadPlan};
pub(crate) use valid::{Planned, PlannedIdentity, ValidPlan};

impl Entry {
    fn of(c: &Assessed, new_not_after: &str) -> Entry {
        let action = c.verdict.state.action();
        Entry {
            action,
            reason: c.verdict.reason.clone(),
            not_after: c.window.map(|w| stamp(w.not_after)),
            new_not_after: matches!(action, Action::Rotate | Action::Recover)
                .then(|| new_not_after.to_string()),
            sha256: c.sha256.map(|d| d.hex()),
        }
    }
}

impl PlanIdentity {
    /// The plan entry of one surveyed identity; `new_not_after` is the survey's (stamped).
    pub(crate) fn of(i: &Identity, new_not_after: &str) -> PlanIdentity {
        PlanIdentity {
            node: i.node().to_string(),
            service: i.service().to_string(),
            cert: i.cert.as_ref().map(|c| Entry::of(c, new_not_after)),
            token: i.token.as_ref().map(|c| Entry::of(c, new_not_after)),
        }
    }
}

/// A plan being written: its header and issues, and its identities one at a time, so that a plan
/// of 10^6 identities is never held whole in memory. Both formats are written from here.
#[derive(Serialize)]
struct Out<'a, I: Serialize, J: Serialize> {
    version: u32,
    root: &'a str,
    as_of: &'a str,
    validity_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<KeyMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_sha256: Option<&'a str>,
    ca_sha256: &'a str,
    ca_not_after: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_other_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identities: Option<usize>,
    identity: I,
    issue: J,
}

impl<I: Serialize, J: Serialize> Out<'_, I, J> {
    fn write_json(&self, w: &mut impl Write) -> std::io::Result<()> {
        // A buffer of its own type, as `status` writes its JSON (report::json).
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer_pretty(&mut w, self)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    fn write_toml_header(&self, w: &mut impl Write) -> std::io::Result<()> {
        writeln!(w, "version = {}", self.version)?;
        writeln!(w, "root = {}", quote(self.root))?;
        writeln!(w, "as_of = {}", quote(self.as_of))?;
        writeln!(w, "validity_days = {}", self.validity_days)?;
        if let Some(keys) = self.keys {
            writeln!(w, "keys = {}", quote(key_mode(keys)))?;
        }
        if let Some(digest) = self.policy_sha256 {
            writeln!(w, "policy_sha256 = {}", quote(digest))?;
        }
        writeln!(w, "ca_sha256 = {}", quote(self.ca_sha256))?;
        writeln!(w, "ca_not_after = {}", quote(self.ca_not_after))?;
        if let Some(stage) = self.ca_stage {
            writeln!(w, "ca_stage = {}", quote(stage))?;
        }
        if let Some(digest) = self.ca_other_sha256 {
            writeln!(w, "ca_other_sha256 = {}", quote(digest))?;
        }
        if let Some(n) = self.identities {
            writeln!(w, "identities = {n}")?;
        }
        Ok(())
    }
}

fn write_toml_identity(i: &PlanIdentity, w: &mut impl Write) -> std::io::Result<()> {
    write!(
        w,
        "\n[[identity]]\nnode = {}\nservice = {}\n",
        quote(&i.node),
        quote(&i.service)
    )?;
    for (key, entry) in [("cert", &i.cert), ("token", &i.token)] {
        if let Some(e) = entry {
            writeln!(w, "{key} = {}", inline(e))?;
        }
    }
    Ok(())
}

fn write_toml_issue(issue: &PlanIssue, w: &mut impl Write) -> std::io::Result<()> {
    write!(
        w,
        "\n[[issue]]\npath = {}\nreason = {}\n",
        quote(&issue.path),
        quote(&issue.reason)
    )
}

/// Which format a plan is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// Writes the plan of the identities as they pass to `w`. The header says how many identities
/// follow, so the entries pass first into a [`Spool`] (one compact JSON line each), counted, and
/// are written after the header from there: memory stays flat at 10^6 identities. The issues,
/// known once every identity has passed, come last.
pub(crate) fn write(
    scope: &Scope,
    judged: &mut Judged<'_>,
    format: Format,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let root = scope.root.to_string_lossy();
    let (as_of, ca_not_after) = (stamp(scope.as_of), stamp(scope.ca.not_after));
    let new_not_after = stamp(scope.context().new_not_after());
    let policy_sha256 = scope.policy.digest().hex();
    let ca_sha256 = scope.ca.sha256.hex();
    let ca_other_sha256 = scope.rotation.as_ref().map(|r| r.other.sha256.hex());
    let mut spool = Spool::new()?;
    let mut count = 0;
    for i in judged.by_ref() {
        serde_json::to_writer(spool.writer(), &PlanIdentity::of(&i, &new_not_after))?;
        spool.writer().write_all(b"\n")?;
        count += 1;
    }
    let issues: Vec<PlanIssue> = problems(judged.end()).collect();
    let spooled = std::io::BufRead::lines(spool.read_back()?)
        .map(|line| serde_json::from_str::<PlanIdentity>(&line?).map_err(std::io::Error::other));
    let out = Out {
        version: VERSION,
        root: &root,
        as_of: &as_of,
        validity_days: scope.policy.validity_days,
        keys: Some(scope.policy.keys),
        policy_sha256: Some(&policy_sha256),
        ca_sha256: &ca_sha256,
        ca_not_after: &ca_not_after,
        ca_stage: Some(scope.stage().name()),
        ca_other_sha256: ca_other_sha256.as_deref(),
        identities: Some(count),
        identity: Spooled(RefCell::new(Some(spooled))),
        issue: &issues,
    };
    match format {
        Format::Toml => {
            out.write_toml_header(w)?;
            let spooled = out.identity.0.borrow_mut().take();
            for i in spooled.into_iter().flatten() {
                write_toml_identity(&i?, w)?;
            }
            for issue in &issues {
                write_toml_issue(issue, w)?;
            }
            Ok(())
        }
        Format::Json => out.write_json(w),
    }
}

/// The problems found besides identities, as plan entries.
fn problems(end: &End) -> impl Iterator<Item = PlanIssue> + '_ {
    end.issues
        .iter()
        .filter(|i| i.is_problem)
        .map(|i| PlanIssue {
            path: i.path.clone(),
            reason: i.message.clone(),
        })
}

/// The plan entries read back from the spool, serialized once as a sequence.
struct Spooled<I>(RefCell<Option<I>>);

impl<I: Iterator<Item = std::io::Result<PlanIdentity>>> Serialize for Spooled<I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(None)?;
        for i in self.0.borrow_mut().take().into_iter().flatten() {
            seq.serialize_element(&i.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

impl Plan {
    fn out(&self) -> Out<'_, &Vec<PlanIdentity>, &Vec<PlanIssue>> {
        Out {
            version: self.version,
            root: &self.root,
            as_of: &self.as_of,
            validity_days: self.validity_days,
            keys: self.keys,
            policy_sha256: self.policy_sha256.as_deref(),
            ca_sha256: &self.ca_sha256,
            ca_not_after: &self.ca_not_after,
            ca_stage: self.ca_stage.as_deref(),
            ca_other_sha256: self.ca_other_sha256.as_deref(),
            identities: self.identities,
            identity: &self.identity,
            issue: &self.issue,
        }
    }

    /// The plan as TOML, one inline table per credential.
    pub fn to_toml(&self) -> String {
        let mut out = Vec::new();
        let write = |out: &mut Vec<u8>| -> std::io::Result<()> {
            self.out().write_toml_header(out)?;
            for i in &self.identity {
                write_toml_identity(i, out)?;
            }
            for issue in &self.issue {
                write_toml_issue(issue, out)?;
            }
            Ok(())
        };
        write(&mut out).expect("writing to memory cannot fail");
        String::from_utf8(out).expect("a plan is UTF-8")
    }

    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.out()
            .write_json(&mut out)
            .expect("writing to memory cannot fail");
        String::from_utf8(out).expect("a plan is UTF-8")
    }
}

fn key_mode(keys: KeyMode) -> &'static str {
    match keys {
        KeyMode::Rotate => "rotate",
        KeyMode::Reuse => "reuse",
    }
}

fn inline(e: &Entry) -> String {
    let action = match e.action {
        Action::Keep => "keep",
        Action::Rotate => "rotate",
        Action::Recover => "recover",
        Action::Skip => "skip",
    };
    let mut fields = vec![
        format!("action = {}", quote(action)),
        format!("reason = {}", quote(&e.reason)),
    ];
    for (key, value) in [
        ("not_after", &e.not_after),
        ("new_not_after", &e.new_not_after),
        ("sha256", &e.sha256),
    ] {
        if let Some(v) = value {
            fields.push(format!("{key} = {}", quote(v)));
        }
    }
    format!("{{ {} }}", fields.join(", "))
}

/// A TOML basic string. JSON string escaping is a subset of TOML's, so serde_json does the work.
fn quote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string always serializes");
    json.replace('\u{7f}', "\\u007F")
}
