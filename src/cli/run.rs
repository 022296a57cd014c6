//! How a command runs, whatever the subcommand: the [`Clock`] read once at start and the dates
//! taken from it (the run date is truncated to the second here and nowhere else), and a writing
//! command's [`Settings`] (workers, progress, report format, hooks), built here and nowhere
//! else. Pure but for what the caller passes in (the clock, whether stderr is a terminal).

use chrono::{DateTime, SubsecRound, Utc};
use rekey::write::hooks::HookArgs;
use rekey::write::{Progress, Settings, Shown, Sink};

use super::values::AsOf;
use super::values::{ProgressFlag, RunFormat};

/// The wall clock, read once when the process started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: DateTime<Utc>,
}

impl Clock {
    pub fn new(started: DateTime<Utc>) -> Clock {
        Clock { started }
    }

    /// The instant itself, to the microsecond: it names a writing run (and dates an audit line).
    pub fn started(self) -> DateTime<Utc> {
        self.started
    }

    /// When a read command judges the fleet: `--as-of` as given (relative to now), else now,
    /// which is the clock to the second.
    pub fn judged_at(self, as_of: Option<AsOf>) -> DateTime<Utc> {
        let now = to_the_second(self.started);
        as_of.map_or(now, |a| a.resolve(now))
    }

    /// The run date of a writing command, and of its preview: what [`Clock::judged_at`] gives,
    /// to the second (new validity starts there). The write wing takes it as it is.
    pub fn run_date(self, as_of: Option<AsOf>) -> DateTime<Utc> {
        to_the_second(self.judged_at(as_of))
    }
}

/// `t` without its fraction of a second: the one truncation of a date rekey makes.
fn to_the_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// The settings of a writing run: the one place they are built. `jobs`, `None`: one worker per
/// core.
pub fn settings(
    clock: Clock,
    jobs: Option<u16>,
    progress: Progress,
    format: RunFormat,
    hooks: HookArgs,
) -> Settings {
    Settings {
        jobs: jobs.map(usize::from),
        progress,
        shown: match format {
            RunFormat::Json => Shown::Json,
            RunFormat::Html => Shown::ByCommand,
            RunFormat::Table | RunFormat::Toml => Shown::Table,
        },
        started: clock.started,
        hooks,
        sink: Sink::Disk,
    }
}

/// The sink of a writing run: nowhere for `--dry-run`.
pub fn sink(dry_run: bool) -> Sink {
    if dry_run { Sink::Nowhere } else { Sink::Disk }
}

/// The settings of a writing command that takes no writing flags (`prune`, `hooks retry`,
/// `demo`): one worker per core, no progress, the table; `hooks` as given.
pub fn quiet(clock: Clock, hooks: HookArgs) -> Settings {
    settings(clock, None, Progress::Hidden, RunFormat::Table, hooks)
}

/// How to show progress on stderr. `never` shows nothing; `auto` draws a bar only for a person
/// (stderr is a terminal and the output is the table, not JSON); `always` draws the bar on a
/// terminal and, anywhere else (a file, a pipe, a CI log), prints plain lines.
pub fn show_progress(mode: ProgressFlag, stderr_is_terminal: bool, table_output: bool) -> Progress {
    match (mode, stderr_is_terminal) {
        (ProgressFlag::Never, _) => Progress::Hidden,
        (ProgressFlag::Always, true) => Progress::Bar,
        (ProgressFlag::Always, false) => Progress::Lines,
        (ProgressFlag::Auto, true) if table_output => Progress::Bar,
        (ProgressFlag::Auto, _) => Progress::Hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_date_is_to_the_second_and_a_read_date_as_given() {
        let clock = Clock::new("2026-11-28T12:00:00.75Z".parse().unwrap());
        let at = |t: &str| Some(AsOf::At(t.parse().unwrap()));
        let back = Some(AsOf::FromNow(chrono::TimeDelta::hours(-12)));
        let cases = [
            ("now, read", clock.judged_at(None), "2026-11-28T12:00:00Z"),
            ("now, run", clock.run_date(None), "2026-11-28T12:00:00Z"),
            (
                "relative, read",
                clock.judged_at(back),
                "2026-11-28T00:00:00Z",
            ),
            (
                "relative, run",
                clock.run_date(back),
                "2026-11-28T00:00:00Z",
            ),
            (
                "fraction given, read",
                clock.judged_at(at("2026-11-01T00:00:00.5Z")),
                "2026-11-01T00:00:00.500Z",
            ),
            (
                "fraction given, run",
                clock.run_date(at("2026-11-01T00:00:00.5Z")),
                "2026-11-01T00:00:00Z",
            ),
        ];
        for (name, got, want) in cases {
            let want: DateTime<Utc> = want.parse().unwrap();
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(clock.started().timestamp_subsec_millis(), 750, "started");
    }

    #[test]
    fn progress_is_a_bar_for_people_and_lines_for_logs_when_asked() {
        use Progress::{Bar, Hidden, Lines};
        use ProgressFlag::{Always, Auto, Never};
        let cases = [
            ("auto, terminal, table", Auto, true, true, Bar),
            ("auto, terminal, json", Auto, true, false, Hidden),
            ("auto, piped, table", Auto, false, true, Hidden),
            ("auto, piped, json", Auto, false, false, Hidden),
            ("always, terminal, table", Always, true, true, Bar),
            ("always, terminal, json", Always, true, false, Bar),
            ("always, piped, table", Always, false, true, Lines),
            ("always, piped, json", Always, false, false, Lines),
            ("never, terminal, table", Never, true, true, Hidden),
            ("never, piped, json", Never, false, false, Hidden),
        ];
        for (name, mode, tty, table, want) in cases {
            assert_eq!(show_progress(mode, tty, table), want, "{name}");
        }
    }
}
