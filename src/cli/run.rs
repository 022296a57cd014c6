//! How a writing command runs, whatever the subcommand: its [`Settings`] (workers, progress,
//! report format, hooks), built here and nowhere else, and whether progress shows. Pure but for
//! what the caller passes in (the clock, whether stderr is a terminal).

use chrono::{DateTime, Utc};
use rekey::write::hooks::HookArgs;
use rekey::write::{Progress, Settings};

use super::args::{ProgressFlag, RunFormat};

/// The settings of a writing run: the one place they are built. `started` is the wall clock
/// read once at start (it names the run); `jobs`, `None`: one worker per core.
pub fn settings(
    started: DateTime<Utc>,
    jobs: Option<u16>,
    progress: Progress,
    format: RunFormat,
    hooks: HookArgs,
) -> Settings {
    Settings {
        jobs: jobs.map(usize::from),
        progress,
        json: format == RunFormat::Json,
        started,
        hooks,
    }
}

/// The settings of a writing command that takes no writing flags (`prune`, `hooks retry`,
/// `demo`): one worker per core, no progress, the table; `hooks` as given.
pub fn quiet(started: DateTime<Utc>, hooks: HookArgs) -> Settings {
    settings(started, None, Progress::Hidden, RunFormat::Table, hooks)
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
