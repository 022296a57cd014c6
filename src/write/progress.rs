//! A writing run's progress on stderr, in the form settled once from the command line
//! ([`Progress`]): nothing, a bar redrawn in place on a terminal, or plain lines for a log
//! (done/total, rate, time left), at most every [`EVERY`] and once at the end, so that a
//! pipeline log shows a long run is alive. Workers tick it once per identity; what a line says
//! is a pure function of the numbers ([`line`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::count::count;

/// How a writing run shows its progress on stderr (docs/design.md §5, `--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Hidden,
    /// A bar redrawn in place: stderr is a terminal.
    Bar,
    /// Plain lines, at most every [`EVERY`] and one at the end: stderr is a file or a pipe.
    Lines,
}

/// The shortest time between two progress lines.
pub(crate) const EVERY: Duration = Duration::from_secs(5);

/// The progress of one run over `total` identities.
pub(crate) struct Meter {
    total: usize,
    done: AtomicUsize,
    started: Instant,
    shown: Shown,
}

enum Shown {
    Hidden,
    Bar(ProgressBar),
    /// When the last line was printed.
    Lines(Mutex<Instant>),
}

impl Meter {
    pub(crate) fn new(progress: Progress, total: usize) -> Meter {
        let started = Instant::now();
        let shown = match progress {
            Progress::Hidden => Shown::Hidden,
            Progress::Bar => {
                let bar = ProgressBar::new(total as u64);
                let noun = crate::count::noun(total, "identity", "identities");
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{bar:40}} {{pos}}/{{len}} {noun} {{elapsed_precise}} eta {{eta}}"
                    ))
                    .expect("the progress template is valid"),
                );
                Shown::Bar(bar)
            }
            Progress::Lines => Shown::Lines(Mutex::new(started)),
        };
        Meter {
            total,
            done: AtomicUsize::new(0),
            started,
            shown,
        }
    }

    /// One more identity handled (staged, skipped or failed); called from the workers.
    pub(crate) fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.inc(1),
            Shown::Lines(last) => {
                let now = Instant::now();
                // One worker prints; the others go on.
                let Ok(mut last) = last.try_lock() else {
                    return;
                };
                if now.duration_since(*last) >= EVERY {
                    *last = now;
                    eprintln!(
                        "{}",
                        line(done, self.total, now - self.started, At::Running)
                    );
                }
            }
        }
    }

    /// The run is over: the bar is cleared, or the last line printed (always, even for a run
    /// shorter than [`EVERY`]). A run that reached every identity says `done`, its count what
    /// it handled (a streamed run's total was counted by listing, before each was judged); a run
    /// `stopped` says so with the count it was given.
    pub(crate) fn finish(self, stopped: bool) {
        match self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.finish_and_clear(),
            Shown::Lines(_) => {
                let done = self.done.into_inner();
                let elapsed = self.started.elapsed();
                let shown = match stopped {
                    true => line(done, self.total, elapsed, At::Stopped),
                    false => line(done, done, elapsed, At::Done),
                };
                eprintln!("{shown}");
            }
        }
    }

    /// The run ended before it had anything to do: no last line (a run that changed nothing
    /// shows no progress), the bar cleared.
    pub(crate) fn clear(self) {
        if let Shown::Bar(bar) = self.shown {
            bar.finish_and_clear();
        }
    }
}

/// Where a run is, for its progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    Running,
    Done,
    Stopped,
}

/// A progress line: `rekey: 2048/5000 identities, 1900/s, about 1.6s left`; at the end
/// `rekey: 5000/5000 identities, 1900/s, done in 2.6s`, or `stopped after 2.6s` when some were not
/// reached.
pub(crate) fn line(done: usize, total: usize, elapsed: Duration, at: At) -> String {
    let per_second = done as f64 / elapsed.as_secs_f64().max(0.001);
    let when = match at {
        At::Done => format!("done in {}", short(elapsed)),
        At::Stopped => format!("stopped after {}", short(elapsed)),
        At::Running if done == 0 => "time left unknown".to_string(),
        At::Running => {
            let left = total.saturating_sub(done) as f64 / per_second;
            format!("about {} left", short(Duration::from_secs_f64(left)))
        }
    };
    format!(
        "rekey: {done}/{}, {per_second:.0}/s, {when}",
        count(total, "identity", "identities")
    )
}

/// A duration as people read it: below a minute to a tenth of a second (`0.4s`, `1.2s`,
/// `42.0s`), then `3m 5s`, `2h 10m`.
fn short(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (d.as_millis() + 500) / 1000;
    match secs {
        0..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_done_total_rate_and_time_left() {
        let s = Duration::from_secs;
        let cases = [
            (
                "under way",
                2048,
                5000,
                Duration::from_millis(1078),
                At::Running,
                "rekey: 2048/5000 identities, 1900/s, about 1.6s left",
            ),
            (
                "nothing done yet",
                0,
                5000,
                s(5),
                At::Running,
                "rekey: 0/5000 identities, 0/s, time left unknown",
            ),
            (
                "minutes left",
                100,
                20000,
                s(5),
                At::Running,
                "rekey: 100/20000 identities, 20/s, about 16m 35s left",
            ),
            (
                "hours left",
                10,
                200000,
                s(5),
                At::Running,
                "rekey: 10/200000 identities, 2/s, about 27h 46m left",
            ),
            (
                "the end",
                5000,
                5000,
                Duration::from_millis(2600),
                At::Done,
                "rekey: 5000/5000 identities, 1923/s, done in 2.6s",
            ),
            (
                "a short run",
                1,
                1,
                Duration::ZERO,
                At::Done,
                "rekey: 1/1 identity, 1000/s, done in 0.0s",
            ),
            (
                "a run of 1.17 s",
                40,
                40,
                Duration::from_millis(1170),
                At::Done,
                "rekey: 40/40 identities, 34/s, done in 1.2s",
            ),
            (
                "just under a minute",
                40,
                40,
                Duration::from_millis(59_940),
                At::Done,
                "rekey: 40/40 identities, 1/s, done in 59.9s",
            ),
            (
                "rounded up to a minute",
                40,
                40,
                Duration::from_millis(59_960),
                At::Done,
                "rekey: 40/40 identities, 1/s, done in 1m 0s",
            ),
            (
                "stopped",
                1024,
                5000,
                s(65),
                At::Stopped,
                "rekey: 1024/5000 identities, 16/s, stopped after 1m 5s",
            ),
        ];
        for (name, done, total, elapsed, at, want) in cases {
            assert_eq!(line(done, total, elapsed, at), want, "{name}");
        }
    }
}
