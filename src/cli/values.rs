//! The values the command line carries that are more than a string: `--as-of` (an instant or
//! an offset from the clock), durations (`30d`, `12h`), whether the table is coloured, and the
//! choices of `--format`, `--progress` and `completions`.
//! Parsed here once; pure functions, table-tested. A value refused is a [`UsageError`], which
//! clap prints after its own `invalid value` line (exit 2).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::ValueEnum;
use rekey::exit::UsageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    Table,
    Json,
    Toml,
    /// `apply PLAN --dry-run` only: the review page of that plan file (one self-contained page).
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressFlag {
    Auto,
    Always,
    Never,
}

/// An `--as-of` as written: an instant, or an offset from the clock read at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    At(DateTime<Utc>),
    FromNow(TimeDelta),
}

impl AsOf {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            AsOf::At(t) => t,
            AsOf::FromNow(d) => now + d,
        }
    }
}

/// Parses `--as-of`: RFC 3339, a date meaning midnight UTC, or `+DURATION`/`-DURATION` from now.
pub fn parse_as_of(text: &str) -> Result<AsOf, UsageError> {
    if let Some(rest) = text.strip_prefix('+') {
        return parse_duration(rest).map(AsOf::FromNow);
    }
    if let Some(rest) = text.strip_prefix('-') {
        return parse_duration(rest).map(|d| AsOf::FromNow(-d));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(AsOf::At(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| AsOf::At(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
        .map_err(|_| {
            UsageError(format!(
                "{text:?} is neither RFC 3339 (2026-11-28T00:00:00Z), a date (2026-11-28) nor \
                 relative to now (+30d, -12h)"
            ))
        })
}

/// Parses a duration of at most a century: a whole number followed by `d`, `h`, `m` or `s`
/// (`30d`, `12h`, `90m`).
pub fn parse_duration(text: &str) -> Result<TimeDelta, UsageError> {
    let bad = || {
        UsageError(format!(
            "{text:?} is not a duration such as 30d, 12h, 90m or 45s (at most 36500d)"
        ))
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds_per = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    text[..text.len() - 1]
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per))
        .filter(|secs| *secs <= 36_500 * 86_400)
        .map(|secs| TimeDelta::seconds(secs as i64))
        .ok_or_else(bad)
}

/// Whether to colour the table: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_accepts_rfc3339_dates_and_times_relative_to_now() {
        let now: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
        let cases = [
            ("date", "2026-11-28", Some("2026-11-28T00:00:00+00:00")),
            (
                "utc",
                "2026-11-28T12:30:00Z",
                Some("2026-11-28T12:30:00+00:00"),
            ),
            (
                "offset",
                "2026-11-28T12:30:00+02:00",
                Some("2026-11-28T10:30:00+00:00"),
            ),
            ("thirty days on", "+30d", Some("2026-12-28T00:00:00+00:00")),
            (
                "twelve hours back",
                "-12h",
                Some("2026-11-27T12:00:00+00:00"),
            ),
            ("no unit", "+30", None),
            ("garbage", "yesterday", None),
            ("bad date", "2026-02-30", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                parse_as_of(input).ok().map(|t| t.resolve(now).to_rfc3339()),
                want.map(str::to_string),
                "{name}"
            );
        }
    }

    #[test]
    fn durations_are_a_number_and_a_unit() {
        let cases = [
            ("days", "30d", Some(TimeDelta::days(30))),
            ("hours", "12h", Some(TimeDelta::hours(12))),
            ("minutes", "90m", Some(TimeDelta::minutes(90))),
            ("seconds", "45s", Some(TimeDelta::seconds(45))),
            ("zero", "0d", Some(TimeDelta::zero())),
            ("no unit", "30", None),
            ("no number", "d", None),
            ("negative", "-1d", None),
            ("unknown unit", "3w", None),
            ("empty", "", None),
            ("absurd", "99999999999d", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{name}");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = std::ffi::OsStr::new("1");
        let empty = std::ffi::OsStr::new("");
        let cases = [
            ("terminal", true, None, true),
            ("pipe", false, None, false),
            ("terminal, NO_COLOR=1", true, Some(set), false),
            ("terminal, NO_COLOR empty", true, Some(empty), true),
            ("pipe, NO_COLOR=1", false, Some(set), false),
        ];
        for (name, tty, no_color, want) in cases {
            assert_eq!(use_colour(tty, no_color), want, "{name}");
        }
    }
}
