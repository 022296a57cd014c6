//! The expiry report's timeline: the credentials expiring on each of the next
//! [`TIMELINE_DAYS`] days. A bar's height is the day's total on a log scale, so that a day of one
//! credential shows beside a day of thousands; the bar is split by state in proportion; a table
//! of the same numbers, week by week, follows it for paper.

use std::fmt::Write as _;

use crate::classify::{State, stamp};
use crate::html::state_colour;
use crate::survey::Identity;
use crate::survey::totals::{index, still_valid};

/// Days the timeline covers.
pub(super) const TIMELINE_DAYS: usize = 120;

/// Credentials expiring on each of the next [`TIMELINE_DAYS`] days, by state.
pub(super) struct Timeline {
    as_of: chrono::DateTime<chrono::Utc>,
    days: Vec<[usize; State::ALL.len()]>,
}

/// Height of the plot, in pixels.
const HEIGHT: usize = 140;

/// The height of a bar of `n` credentials where the busiest day has `peak`: log scale, one
/// credential at least a few pixels.
fn bar_height(n: usize, peak: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let scale = ((1 + n) as f64).ln() / ((1 + peak.max(1)) as f64).ln();
    ((scale * HEIGHT as f64).round() as usize).clamp(3, HEIGHT)
}

impl Timeline {
    pub(super) fn new(as_of: chrono::DateTime<chrono::Utc>) -> Timeline {
        Timeline {
            as_of,
            days: vec![[0usize; State::ALL.len()]; TIMELINE_DAYS],
        }
    }

    pub(super) fn add(&mut self, identity: &Identity) {
        for c in identity.credentials() {
            let Some(w) = c.window else { continue };
            if !still_valid(c.kind, w.not_after, self.as_of) {
                continue;
            }
            let day = usize::try_from((w.not_after - self.as_of).num_seconds() / 86_400)
                .unwrap_or(usize::MAX);
            if let Some(counts) = self.days.get_mut(day) {
                counts[index(c.verdict.state)] += 1;
            }
        }
    }

    fn date(&self, day: usize) -> String {
        stamp(self.as_of + chrono::TimeDelta::days(day as i64))[..10].to_string()
    }

    /// The timeline as SVG, its legend, then the week-by-week table.
    pub(super) fn write(&self, out: &mut String) {
        let total: usize = self.days.iter().flatten().sum();
        let peak = self.days.iter().map(|d| d.iter().sum::<usize>()).max().unwrap_or(0);
        let noun = crate::count::noun(total, "credential", "credentials");
        let _ = writeln!(
            out,
            "<h2>Expiring in the next {TIMELINE_DAYS} days: <span id=\"timeline-total\">{total}\
             </span> {noun}</h2>\n<p class=\"meta\">Bar height: the day's count on a log \
             scale (a day with a single expiry shows beside the busiest, {peak}); colours split it by state. The \
             table under it gives the numbers, week by week.</p>"
        );
        let (bar, left, top) = (7usize, 40usize, 10usize);
        let width = left + bar * TIMELINE_DAYS + 10;
        let full = HEIGHT + top + 30;
        let _ = write!(
            out,
            "<svg id=\"timeline\" role=\"img\" aria-label=\"credentials expiring per day, log \
             scale\" width=\"{width}\" height=\"{full}\" viewBox=\"0 0 {width} {full}\">"
        );
        let base = top + HEIGHT;
        let _ = write!(
            out,
            "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#9aa5b1\"/>",
            width - 10
        );
        // Ticks at 1, 10, 100, … up to the peak, and the peak itself.
        let mut ticks: Vec<usize> = std::iter::successors(Some(1usize), |t| t.checked_mul(10))
            .take_while(|t| *t <= peak)
            .collect();
        // The peak too, unless a tick is already drawn so near that the labels would overlap.
        let near = |t: &usize| bar_height(peak, peak) - bar_height(*t, peak) < 12;
        if peak > 0 && !ticks.last().is_some_and(near) {
            ticks.push(peak);
        }
        for t in ticks {
            let y = base - bar_height(t, peak);
            let _ = write!(
                out,
                "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e6eaee\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t}</text>",
                width - 10,
                left - 4,
                y + 4
            );
        }
        for (day, counts) in self.days.iter().enumerate() {
            let x = left + day * bar;
            let n_day: usize = counts.iter().sum();
            let height = bar_height(n_day, peak);
            let mut y = base;
            let mut drawn = 0;
            for (state, n) in State::ALL.iter().zip(counts) {
                if *n == 0 {
                    continue;
                }
                // Split in proportion; rounding is settled on the last piece.
                drawn += n;
                let top_of = base - height * drawn / n_day;
                let h = (y - top_of).max(1);
                y -= h;
                let _ = write!(
                    out,
                    "<rect class=\"bar\" data-day=\"{day}\" data-state=\"{}\" data-n=\"{n}\" \
                     x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{}\"><title>{} {}: \
                     {n}</title></rect>",
                    state.as_str(),
                    bar - 1,
                    state_colour(*state),
                    self.date(day),
                    state.as_str(),
                );
            }
            if day % 15 == 0 {
                let _ = write!(
                    out,
                    "<text x=\"{x}\" y=\"{}\">{}</text>",
                    base + 16,
                    &self.date(day)[5..]
                );
            }
        }
        out.push_str("</svg>\n<p class=\"legend\">States: ");
        for state in State::ALL {
            let _ = write!(
                out,
                "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
                state_colour(state),
                state.as_str()
            );
        }
        out.push_str("</p>\n");
        self.write_weeks(out);
    }

    /// The same numbers week by week: a row per week with any, a column per state with any.
    fn write_weeks(&self, out: &mut String) {
        let states: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| self.days.iter().any(|d| d[index(*s)] > 0))
            .collect();
        out.push_str("<table id=\"timeline-weeks\"><tr><th>week</th><th class=\"num\">credentials</th>");
        for s in &states {
            let _ = write!(out, "<th class=\"num\">{}</th>", s.as_str());
        }
        out.push_str("</tr>\n");
        for (week, days) in self.days.chunks(7).enumerate() {
            let mut counts = [0usize; State::ALL.len()];
            for day in days {
                for (sum, n) in counts.iter_mut().zip(day) {
                    *sum += n;
                }
            }
            let n: usize = counts.iter().sum();
            if n == 0 {
                continue;
            }
            let first = week * 7;
            let _ = write!(
                out,
                "<tr class=\"week-row\"><td>{} – {}</td><td class=\"num\" data-n=\"{n}\">{n}</td>",
                self.date(first),
                self.date(first + days.len() - 1)
            );
            for s in &states {
                let _ = write!(out, "<td class=\"num\">{}</td>", counts[index(*s)]);
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_one_shows_beside_a_day_of_thousands() {
        let cases = [
            ("nothing", 0, 2650, 0),
            ("one beside a spike", 1, 2650, 12),
            ("the spike fills the plot", 2650, 2650, HEIGHT),
            ("one alone fills the plot", 1, 1, HEIGHT),
            ("ten beside a thousand", 10, 1000, 49),
        ];
        for (name, n, peak, want) in cases {
            assert_eq!(bar_height(n, peak), want, "{name}");
        }
    }
}
