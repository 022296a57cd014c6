//! Renders a survey for people: the `status` table and the short plan summary that goes to
//! stderr; `report::json` renders it for pipelines. Pure: values in, text out.

pub(crate) mod hooks;
mod json;

use std::io::Write;

pub(crate) use json::write_status_json;

use crate::classify::{Action, State, day, human, stamp};
use crate::count::count;
use crate::out::Spool;
use crate::select::ExitRule;
use crate::survey::{CaStep, End, Judged, Scope};
use crate::values::Escaped;

/// The CA line shown first by `status`.
pub(crate) fn ca_line(scope: &Scope) -> String {
    let ca = &scope.ca;
    let ctx = scope.context();
    let left = ca.not_after - scope.as_of;
    let left = if left < chrono::TimeDelta::zero() {
        format!("expired {}", human(left))
    } else {
        format!("{} left", human(left))
    };
    let mut line = format!(
        "CA {:?} ({}), expires {} ({left}), key {}",
        ca.common_name,
        ca.public.alg,
        stamp(ca.not_after),
        ca.key.describe(),
    );
    if let Some(r) = &scope.rotation {
        let role = match r.role() {
            crate::ca::Role::Previous => "signing no more, still trusted",
            _ => "trusted, not signing yet",
        };
        line.push_str(&format!(
            "; CA rotation {}: {} CA {:?} ({}), expires {} ({role})",
            r.stage.name(),
            r.role().as_str(),
            r.other.common_name,
            r.other.public.alg,
            stamp(r.other.not_after),
        ));
    }
    if ca.not_after <= scope.as_of {
        line.push_str(" — EXPIRED: nothing can be rotated until the CA is renewed");
    } else if ctx.ca_caps_validity() {
        // The command that ends the capping: a new CA that signs (docs/design.md §3a).
        let step = match scope.stage() {
            crate::ca::Stage::Begun => crate::survey::CaStep::Switch,
            _ => crate::survey::CaStep::Begin { ends: ca.not_after },
        };
        line.push_str(&format!(
            " — expires within {}: new validity is capped at its expiry until a new CA signs \
             (next: {})",
            count(scope.policy.validity_days, "day", "days"),
            step.command()
        ));
    }
    line
}

/// The line naming the policy in force, shown by `status` and `plan`.
pub(crate) fn policy_line(scope: &Scope) -> String {
    format!(
        "policy {}, policy_sha256 {}",
        scope.policy_source.describe(),
        scope.policy.digest()
    )
}

/// The `status` table: CA first, then one aligned row per credential, then reported issues.
pub(crate) fn status_table(scope: &Scope, judged: &mut Judged<'_>) -> std::io::Result<String> {
    let mut out = Vec::new();
    write_status_table(scope, judged, None, Some(&hooks::Pending::new()), false, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The ANSI colour of a state on a terminal.
fn colour_of(state: &str) -> Option<&'static str> {
    match state {
        "healthy" | "fresh" => Some("32"),
        "due" => Some("33"),
        "stalled" | "expired" => Some("1;33"),
        "recover" => Some("1;31"),
        "problem" => Some("35"),
        "unreadable" => Some("2"),
        _ => None,
    }
}

/// [`status_table`] written as the identities pass: the rows are set aside on disk while the
/// columns are measured ([`Spool`]), so that at 10^6 identities the table is never in memory.
/// With `colour`, states are coloured (for a terminal; never for a pipe or with `NO_COLOR`);
/// `rule`, the exit rule of a monitor, adds its answer to the summary; `pending`, the hooks
/// earlier runs left pending (`None`: the run store could not be read), a line about them.
pub(crate) fn write_status_table(
    scope: &Scope,
    judged: &mut Judged<'_>,
    rule: Option<ExitRule>,
    pending: Option<&hooks::Pending>,
    colour: bool,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let header = [
        "NODE",
        "SERVICE",
        "KIND",
        "EXPIRES",
        "LEFT",
        "SELF-ROTATES",
        "STATE",
        "REASON",
    ]
    .map(str::to_string)
    .to_vec();
    let mut widths = Widths::default();
    widths.measure(&header);
    let mut spool = Spool::new()?;
    for identity in judged.by_ref() {
        if identity.state() == State::Unreadable {
            // Nothing of it is readable by this user: said once, not once per file.
            let row = [identity.node(), identity.service(), "-", "-", "-", "-"]
                .into_iter()
                .chain([State::Unreadable.as_str(), "nothing here is readable by you"]);
            let row: Vec<&str> = row.collect();
            widths.measure(&row);
            serde_json::to_writer(spool.writer(), &row)?;
            spool.writer().write_all(b"\n")?;
            continue;
        }
        for c in identity.credentials() {
            let row = [
                identity.node(),
                identity.service(),
                c.kind.as_str(),
                &c.window.map_or_else(|| "-".to_string(), |w| day(w.not_after)),
                &c.window
                    .map_or_else(|| "-".to_string(), |w| human(w.not_after - scope.as_of)),
                if c.self_rotates { "yes" } else { "no" },
                c.verdict.state.as_str(),
                &c.verdict.reason,
            ];
            widths.measure(&row);
            serde_json::to_writer(spool.writer(), &row)?;
            spool.writer().write_all(b"\n")?;
        }
    }
    write!(
        w,
        "{}\n{}\n\n",
        Escaped::new(&ca_line(scope)),
        Escaped::new(&policy_line(scope))
    )?;
    const STATE_COLUMN: usize = 6;
    let style = |column: usize, cell: &str| {
        (colour && column == STATE_COLUMN)
            .then(|| colour_of(cell))
            .flatten()
    };
    let spooled = std::io::BufRead::lines(spool.read_back()?).map(|line| {
        serde_json::from_str::<Vec<String>>(&line?).map_err(std::io::Error::other)
    });
    for row in std::iter::once(Ok(header)).chain(spooled) {
        write_row(w, &row?, &widths.0, &style)?;
    }
    let end = judged.end();
    if !end.issues.is_empty() || end.hidden > 0 {
        writeln!(w)?;
    }
    for issue in &end.issues {
        let tag = if issue.is_problem { "problem" } else { "note" };
        writeln!(
            w,
            "{tag}: {}: {}",
            Escaped::new(&issue.path),
            Escaped::new(&issue.message)
        )?;
    }
    if let Some(line) = hidden_line(end.hidden) {
        writeln!(w, "{line}")?;
    }
    writeln!(w)?;
    let monitor = rule.and_then(|rule| rule.summary(&end.totals, scope));
    let hooks = hooks::summary_line(pending);
    for line in end.totals.summary(scope).into_iter().chain(hooks).chain(monitor) {
        writeln!(w, "{}", Escaped::new(&line))?;
    }
    Ok(())
}

/// The one line that counts the hidden entries ignored (`note: ignored 2 hidden entries …`).
fn hidden_line(hidden: usize) -> Option<String> {
    (hidden > 0).then(|| {
        format!(
            "note: ignored {} (names starting with a dot under nodes/ or a node)",
            count(hidden, "hidden entry", "hidden entries")
        )
    })
}

/// The plan summary for stderr: counts per action, then each identity that needs a person.
/// Names, paths and reasons are [`Escaped`]: stderr is a terminal stream.
pub(crate) fn plan_summary(scope: &Scope, end: &End, forced: usize) -> std::io::Result<String> {
    let mut out = Vec::new();
    write_plan_summary(&mut out, scope, end, forced)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`plan_summary`] written to stderr as it is made (after a missed window it lists the
/// fleet): a summary that cannot be written or read back is said, never the run's failure.
pub(crate) fn show_plan_summary(scope: &Scope, end: &End, forced: usize) {
    let mut stderr = std::io::BufWriter::new(std::io::stderr().lock());
    let shown = write_plan_summary(&mut stderr, scope, end, forced).and_then(|()| stderr.flush());
    drop(stderr);
    if let Err(e) = shown {
        eprintln!("rekey: warning: the plan summary is incomplete: {e}");
    }
}

/// [`plan_summary`] to `w`, a line at a time.
pub(crate) fn write_plan_summary(
    w: &mut dyn std::io::Write,
    scope: &Scope,
    end: &End,
    forced: usize,
) -> std::io::Result<()> {
    let mut counts = [0usize; 4];
    for state in State::ALL {
        counts[state.action() as usize] += end.totals.credentials_in(state);
    }
    let forced = forced.min(counts[Action::Keep as usize]);
    let forced_note = if forced > 0 {
        format!(" ({forced} forced)")
    } else {
        String::new()
    };
    writeln!(
        w,
        "plan: {}, {}: {} rotate{forced_note}, {} keep, {} recover, {} skip",
        count(end.totals.identities_total(), "identity", "identities"),
        count(counts.iter().sum::<usize>(), "credential", "credentials"),
        counts[Action::Rotate as usize] + forced,
        counts[Action::Keep as usize] - forced,
        counts[Action::Recover as usize],
        counts[Action::Skip as usize],
    )?;
    writeln!(w, "{}", Escaped::new(&policy_line(scope)))?;
    if scope.context().ca_caps_validity() {
        writeln!(w, "warning: {}", Escaped::new(&ca_line(scope)))?;
    }
    for warning in &scope.warnings {
        writeln!(w, "warning: {}", Escaped::new(warning))?;
    }
    for person in end.people.read() {
        let person = person?;
        let dir = person.id.dir_in(&scope.root);
        writeln!(
            w,
            "{}: {}: {}",
            person.tag,
            Escaped::new(&dir),
            Escaped::new(&person.reasons)
        )?;
    }
    for issue in &end.issues {
        let tag = if issue.is_problem { "problem" } else { "note" };
        writeln!(
            w,
            "{tag}: {}: {}",
            Escaped::new(&scope.root.join(&issue.path)),
            Escaped::new(&issue.message)
        )?;
    }
    // A CA rotation due or under way: a plan (and `rotate`, which prints this summary before
    // its run) rotates credentials, never the CA, so the stage to run is named; moving the
    // credentials off the previous CA is what the plan itself does.
    match end.totals.ca_step(scope) {
        Some(CaStep::Rotate { .. }) | None => Ok(()),
        Some(step) => writeln!(w, "{}", Escaped::new(&step.next_line(scope))),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded. Every cell is shown
/// [`Escaped`] (a table is for a terminal), and measured as shown.
pub(crate) fn align(rows: &[Vec<String>]) -> String {
    let mut table = Aligned::default();
    for row in rows {
        table.measure(row);
    }
    let mut out = Vec::new();
    for row in rows {
        table.write(&mut out, row).expect("writing to memory cannot fail");
    }
    String::from_utf8(out).expect("the table is UTF-8")
}

/// An [`align`]ed table written a row at a time, never held: every row is measured first (a
/// pass over what the table shows), then each is written as it comes (a second pass).
#[derive(Default)]
pub(crate) struct Aligned(Widths);

impl Aligned {
    pub(crate) fn measure(&mut self, row: &[String]) {
        self.0.measure(row);
    }

    pub(crate) fn write(&self, w: &mut impl Write, row: &[String]) -> std::io::Result<()> {
        write_row(w, row, &self.0.0, &|_, _| None)
    }
}

/// The width of each column of a table, in characters, measured row by row.
#[derive(Default)]
struct Widths(Vec<usize>);

impl Widths {
    fn measure<S: AsRef<str>>(&mut self, row: &[S]) {
        self.0.resize(self.0.len().max(row.len()), 0);
        for (width, cell) in self.0.iter_mut().zip(row) {
            *width = (*width).max(Escaped::new(cell.as_ref()).to_string().chars().count());
        }
    }
}

/// One row of an aligned table. `style` gives the ANSI colour of a cell (by column and text),
/// wrapped around it after padding so that columns stay aligned.
fn write_row(
    w: &mut impl Write,
    row: &[String],
    widths: &[usize],
    style: &dyn Fn(usize, &str) -> Option<&'static str>,
) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        let cell = &Escaped::new(cell).to_string();
        let padded = if i + 1 == row.len() {
            cell.clone()
        } else {
            format!("{cell:<width$}", width = widths[i])
        };
        match style(i, cell) {
            Some(code) => line.push_str(&format!(
                "\x1b[{code}m{cell}\x1b[0m{}",
                &padded[cell.len()..]
            )),
            None => line.push_str(&padded),
        }
        if i + 1 < row.len() {
            line.push_str("  ");
        }
    }
    writeln!(w, "{}", line.trim_end())
}
