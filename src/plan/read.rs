//! A plan file read for `apply` as a stream (docs/design.md §5): the header first, then one
//! identity entry at a time, each validated (`plan::valid`) and checked to come after the one
//! before it in (node, service) order, so that nothing is held but the entry being read,
//! whatever the plan's size. The whole file is read and judged before `apply` writes anything:
//! each valid entry is set aside, a short line in an unnamed temporary file, and read back from
//! there as often as the run needs (`ReadPlan::entries`); the file's digest is computed as it
//! passes.
//!
//! A TOML plan is cut into tables at each line that begins an array of tables (`[[identity]]`,
//! `[[issue]]`), each parsed on its own: a cut inside a multi-line string leaves a piece that
//! does not parse, and the plan is refused, never read otherwise than whole. A JSON plan is read
//! by one streaming parser that hands each identity entry over as it ends.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};

use anyhow::{Context, Result, anyhow, bail};
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::file::{Plan, PlanIdentity, PlanIssue};
use super::valid::{self, PlannedIdentity, ValidPlan};
use crate::digest::{Digest, Running};
use crate::names::IdentityId;
use crate::values::{Step, clip, quoted, toml_line};

/// The largest plan `apply` reads: ten times a plan of 10^5 identities. A larger file is refused
/// before it is read (standard input: after this many bytes and one more).
pub(crate) const MAX_PLAN_BYTES: u64 = 64 << 20;

/// The largest header or table of a TOML plan: rekey writes a few hundred bytes each; a table
/// holding a name or a line of a megabyte still parses, and its message quotes a little of it.
pub(crate) const MAX_TABLE_BYTES: usize = 4 << 20;

/// A plan read whole and found valid: its header, its digest, and its identity entries set aside
/// in (node, service) order.
pub(crate) struct ReadPlan {
    pub(crate) header: ValidPlan,
    /// SHA-256 of the plan file's bytes, as read.
    pub(crate) sha256: Digest,
    /// The entries, one JSON line each ([`Kept`]).
    kept: File,
}

/// One identity entry as set aside: its name, where the plan holds it, and what it plans.
#[derive(Serialize, Deserialize)]
struct Kept {
    node: String,
    service: String,
    at: String,
    planned: PlannedIdentity,
}

impl ReadPlan {
    /// Reads the plan `from` (TOML, or JSON when its first character is `{`) and validates all
    /// of it; the error is the first thing wrong with it.
    pub(crate) fn read(from: impl Read) -> Result<ReadPlan> {
        let mut from = BufReader::with_capacity(1 << 16, Counted::new(from));
        // Blank space before the first character is passed over, its lines counted.
        let mut skipped = 0;
        let json = loop {
            let buf = from.fill_buf().map_err(|e| anyhow!(e))?;
            if buf.is_empty() {
                bail!("it is empty");
            }
            let blank = buf.iter().position(|b| !b.is_ascii_whitespace());
            let n = blank.unwrap_or(buf.len());
            skipped += buf[..n].iter().filter(|b| **b == b'\n').count();
            let first = blank.map(|at| buf[at]);
            from.consume(n);
            if let Some(first) = first {
                break first == b'{';
            }
        };
        let mut keeper = Keeper::new()?;
        let header = if json {
            read_json(&mut from, &mut keeper)?
        } else {
            read_toml(&mut from, skipped, &mut keeper)?
        };
        // What follows a JSON document, or a TOML plan's last line, has been read: the digest
        // is of every byte.
        std::io::copy(&mut from, &mut std::io::sink()).map_err(|e| anyhow!(e))?;
        if header.identities != keeper.count {
            bail!(
                "the plan says identities = {} but holds {}: it was cut short or edited; make a \
                 new plan",
                header.identities,
                crate::count::count(keeper.count, "identity entry", "identity entries"),
            );
        }
        let kept = keeper.finish()?;
        Ok(ReadPlan {
            header,
            sha256: from.into_inner().hash.finish(),
            kept,
        })
    }

    /// The identity entries, in (node, service) order, read back from where they were set aside.
    pub(crate) fn entries(&self) -> Result<Entries> {
        let mut file = self
            .kept
            .try_clone()
            .context("failed to read back the plan's entries")?;
        file.rewind()
            .context("failed to read back the plan's entries")?;
        Ok(Entries {
            lines: BufReader::with_capacity(1 << 16, file).lines(),
        })
    }
}

/// A plan's identity entries, read back.
pub(crate) struct Entries {
    lines: std::io::Lines<BufReader<File>>,
}

impl Iterator for Entries {
    type Item = Result<(IdentityId, PlannedIdentity)>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.lines.next()?;
        Some(
            line.map_err(anyhow::Error::from)
                .and_then(|line| Ok(serde_json::from_str::<Kept>(&line)?))
                .and_then(|k| {
                    let id = IdentityId::new(&k.node, &k.service)
                        .ok_or_else(|| anyhow!("a plan entry set aside is not an identity"))?;
                    Ok((id, k.planned))
                })
                .context("failed to read back the plan's entries"),
        )
    }
}

/// The reader of a plan: counts and hashes what passes, and refuses more than
/// [`MAX_PLAN_BYTES`].
struct Counted<R> {
    from: R,
    read: u64,
    hash: Running,
}

impl<R: Read> Counted<R> {
    fn new(from: R) -> Self {
        Counted {
            from,
            read: 0,
            hash: Running::default(),
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.read += n as u64;
        self.hash.update(&buf[..n]);
        if self.read > MAX_PLAN_BYTES {
            return Err(std::io::Error::other(format!(
                "it is larger than a plan can be ({MAX_PLAN_BYTES} bytes, 64 MiB); the rest was \
                 not read"
            )));
        }
        Ok(n)
    }
}

/// The entries set aside as they are read, each checked to come after the one before.
struct Keeper {
    spool: crate::out::Spool,
    last: Option<(IdentityId, String)>,
    count: usize,
}

impl Keeper {
    fn new() -> Result<Keeper> {
        Ok(Keeper {
            spool: crate::out::Spool::new()?,
            last: None,
            count: 0,
        })
    }

    /// Sets aside the entry of `id`, held `at` in the plan.
    fn keep(&mut self, id: IdentityId, planned: PlannedIdentity, at: String) -> Result<()> {
        self.count += 1;
        if let Some((last, last_at)) = self.last.take()
            && id <= last
        {
            let first = if id == last {
                Some(last_at.clone())
            } else {
                self.earlier(&id)?
            };
            match first {
                Some(first) => bail!(
                    "{id} is planned twice ({first} and {at}): a plan names each identity once; \
                     make a new plan"
                ),
                None => bail!(
                    "{at}: {id} comes after {last} ({last_at}): a plan lists its identities in \
                     (node, service) order, as rekey writes them; the plan was edited; make a \
                     new plan"
                ),
            }
        }
        let kept = Kept {
            node: id.node().to_string(),
            service: id.service().to_string(),
            at,
            planned,
        };
        let w = self.spool.writer();
        serde_json::to_writer(&mut *w, &kept)?;
        w.write_all(b"\n")?;
        self.last = Some((id, kept.at));
        Ok(())
    }

    /// Where an entry set aside names `id`, if one does (on the way to refusing the plan).
    fn earlier(&mut self, id: &IdentityId) -> Result<Option<String>> {
        let spool = std::mem::replace(&mut self.spool, crate::out::Spool::new()?);
        for line in spool.read_back()?.lines() {
            let kept: Kept = serde_json::from_str(&line?)?;
            if (kept.node.as_str(), kept.service.as_str()) == (id.node(), id.service()) {
                return Ok(Some(kept.at));
            }
        }
        Ok(None)
    }

    fn finish(self) -> Result<File> {
        Ok(self.spool.read_back()?.into_inner())
    }
}

/// The tables of a TOML plan after its header: an identity entry or an issue each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    identity: Vec<PlanIdentity>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "checked against the schema, then dropped: apply does not use issues"
    )]
    issue: Vec<PlanIssue>,
}

/// A piece of a TOML plan: its text and the line (from 1) it starts at.
struct Piece {
    text: String,
    line: usize,
}

fn read_toml(from: &mut impl BufRead, skipped: usize, keeper: &mut Keeper) -> Result<ValidPlan> {
    let mut header = None;
    let mut line = skipped;
    let mut piece = Piece {
        text: String::new(),
        line: line + 1,
    };
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        let room = MAX_TABLE_BYTES + 1 - piece.text.len().min(MAX_TABLE_BYTES);
        let n = from
            .by_ref()
            .take(room as u64)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| anyhow!(e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("it is not UTF-8 text"))?;
        if text.trim_start().starts_with("[[") {
            take(&mut header, &piece, keeper)?;
            piece = Piece {
                text: String::new(),
                line,
            };
        }
        if piece.text.len() + text.len() > MAX_TABLE_BYTES {
            // A file larger than a plan can be is refused as such, whatever it holds: the rest
            // is read (and not held) to know.
            std::io::copy(from, &mut std::io::sink()).map_err(|e| anyhow!(e))?;
            let what = if header.is_none() {
                "the plan's header"
            } else {
                "the table that starts there"
            };
            bail!(
                "line {}: {what} is longer than a plan's can be ({MAX_TABLE_BYTES} bytes, 4 \
                 MiB): the plan was edited; make a new plan",
                piece.line
            );
        }
        piece.text.push_str(text);
    }
    take(&mut header, &piece, keeper)?;
    header.ok_or_else(|| anyhow!("it is empty"))
}

/// Parses and validates one piece of a TOML plan: the header when none was read yet, else a
/// table.
fn take(header: &mut Option<ValidPlan>, piece: &Piece, keeper: &mut Keeper) -> Result<()> {
    let Some(_) = header else {
        let plan: Plan = toml::from_str(&piece.text).map_err(|e| toml_error(&e, piece))?;
        if !plan.identity.is_empty() || !plan.issue.is_empty() {
            bail!(
                "the plan's header holds identity or issue entries: a plan lists them as \
                 [[identity]] and [[issue]] tables after its header, as rekey writes them; make \
                 a new plan"
            );
        }
        plan.check_version()?;
        *header = Some(valid::header(&plan)?);
        return Ok(());
    };
    let table: Table = toml::from_str(&piece.text).map_err(|e| toml_error(&e, piece))?;
    for i in &table.identity {
        let at = |path: &[&str]| {
            let steps: Vec<Step<'_>> = [Step::Key("identity"), Step::Index(0)]
                .into_iter()
                .chain(path.iter().map(|key| Step::Key(key)))
                .collect();
            let line = toml_line(&piece.text, &steps).unwrap_or(1);
            format!("line {}", piece.line + line - 1)
        };
        let (id, planned) = valid::identity(i, at)?;
        keeper.keep(id, planned, format!("line {}", piece.line))?;
    }
    Ok(())
}

/// A TOML parser's message, at the line of the plan it concerns, quoting (in part) that line.
fn toml_error(e: &toml::de::Error, piece: &Piece) -> anyhow::Error {
    let Some(span) = e.span() else {
        return anyhow!(clip(e.message().trim()));
    };
    let start = span.start.min(piece.text.len());
    let before = &piece.text.as_bytes()[..start];
    let n = before.iter().filter(|b| **b == b'\n').count();
    let text = piece.text.lines().nth(n).unwrap_or_default();
    anyhow!(
        "line {}: {} (the line reads {})",
        piece.line + n,
        clip(e.message().trim()),
        quoted(text.trim_end())
    )
}

/// Reads a JSON plan: its header's fields in any order, its identity entries handed to `keeper`
/// as each ends, its issues checked and dropped.
fn read_json(from: &mut impl BufRead, keeper: &mut Keeper) -> Result<ValidPlan> {
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_reader(from);
    let parsed = JsonPlan {
        keeper,
        failed: &mut failed,
    }
    .deserialize(&mut de)
    .and_then(|plan| de.end().map(|()| plan));
    let plan = match (parsed, failed) {
        (_, Some(err)) => return Err(err),
        (Err(e), None) => bail!("{}", clip(&e.to_string())),
        (Ok(plan), None) => plan,
    };
    plan.check_version()?;
    valid::header(&plan)
}

/// A JSON plan's document, its entries passed to a [`Keeper`]; what it returns is the header.
struct JsonPlan<'k> {
    keeper: &'k mut Keeper,
    /// Why an entry was refused, when it was: the parser's own error only stops it.
    failed: &'k mut Option<anyhow::Error>,
}

impl<'de> DeserializeSeed<'de> for JsonPlan<'_> {
    type Value = Plan;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Plan, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonPlan<'_> {
    type Value = Plan;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a plan")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Plan, A::Error> {
        let mut header = serde_json::Map::new();
        let mut seen = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let repeated = match key.as_str() {
                "identity" => std::mem::replace(&mut seen.0, true),
                "issue" => std::mem::replace(&mut seen.1, true),
                _ => header.contains_key(&key),
            };
            if repeated {
                return Err(A::Error::custom(format!("duplicate field `{key}`")));
            }
            match key.as_str() {
                "identity" => map.next_value_seed(Identities {
                    keeper: &mut *self.keeper,
                    failed: &mut *self.failed,
                })?,
                "issue" => map.next_value_seed(Issues)?,
                _ => {
                    let value: serde_json::Value = map.next_value()?;
                    header.insert(key, value);
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(header)).map_err(A::Error::custom)
    }
}

/// A JSON plan's `identity` array, each entry validated and set aside as it ends.
struct Identities<'k> {
    keeper: &'k mut Keeper,
    failed: &'k mut Option<anyhow::Error>,
}

impl<'de> DeserializeSeed<'de> for Identities<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Identities<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of identity entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        while let Some(i) = seq.next_element::<PlanIdentity>()? {
            n += 1;
            let at = format!("identity entry {n}");
            let kept = valid::identity(&i, |_| at.clone())
                .and_then(|(id, planned)| self.keeper.keep(id, planned, at.clone()));
            if let Err(err) = kept {
                *self.failed = Some(err);
                return Err(A::Error::custom("refused"));
            }
        }
        Ok(())
    }
}

/// A JSON plan's `issue` array: each entry checked against the schema, none held.
struct Issues;

impl<'de> DeserializeSeed<'de> for Issues {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Issues {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of issues")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<PlanIssue>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests;
