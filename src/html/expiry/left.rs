//! The expiry report's time-left scale: buckets of time left, drawn in a sequential palette (one
//! hue, darker as less time is left, so that it reads in grey on paper too) that shares no
//! colour with the states' palette, which the page keeps for states only. "Past expiry date" is
//! the one bucket of credentials whose expiry has passed, whatever their state; the state
//! `expired` is a state (a certificate past its date whose token still proves the identity).

use crate::classify::Kind;
use crate::survey::totals::still_valid;

/// How many buckets the scale has.
pub(super) const BUCKETS: usize = 5;

/// Each bucket: its label, its fill and the ink of a number written on it.
pub(super) const SCALE: [(&str, &str, &str); BUCKETS] = [
    ("past expiry date", "#08306b", "#ffffff"),
    ("under 7 days", "#2171b5", "#ffffff"),
    ("under 30 days", "#6baed6", "#08306b"),
    ("under 60 days", "#c6dbef", "#08306b"),
    ("60 days or more", "#f7fbff", "#08306b"),
];

/// A cell holding a problem: no colour of the scale, a mark instead.
pub(super) const PROBLEM: (&str, &str, &str) = ("a problem (!)", "#e0e0e0", "#212121");

/// The bucket of a credential of `kind` that expires `left` seconds after the run date.
pub(super) fn bucket(kind: Kind, left: i64) -> usize {
    const DAY: i64 = 86_400;
    let epoch = chrono::DateTime::UNIX_EPOCH;
    if !still_valid(kind, epoch + chrono::TimeDelta::seconds(left), epoch) {
        0
    } else if left < 7 * DAY {
        1
    } else if left < 30 * DAY {
        2
    } else if left < 60 * DAY {
        3
    } else {
        4
    }
}

/// The legend of the scale, the problem mark last.
pub(super) fn legend(out: &mut String) {
    use std::fmt::Write as _;
    out.push_str("<p class=\"legend\">Time left: ");
    for (label, colour, _) in SCALE.iter().chain([&PROBLEM]) {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{colour};outline:1px solid \
             #9aa5b1\"></span>{label}</span>"
        );
    }
    out.push_str("</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_at_their_boundaries() {
        const DAY: i64 = 86_400;
        let cases = [
            ("cert at its not_after is valid", Kind::Cert, 0, 1),
            ("token at its exp has expired", Kind::Token, 0, 0),
            ("a second past", Kind::Cert, -1, 0),
            ("just under 7 days", Kind::Cert, 7 * DAY - 1, 1),
            ("7 days", Kind::Cert, 7 * DAY, 2),
            ("30 days", Kind::Token, 30 * DAY, 3),
            ("60 days", Kind::Token, 60 * DAY, 4),
        ];
        for (name, kind, left, want) in cases {
            assert_eq!(bucket(kind, left), want, "{name}");
        }
    }
}
