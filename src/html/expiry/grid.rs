//! The expiry report's grid: the least time left by node and service, made node by node as the
//! identities pass, the most urgent nodes and services kept apart and the rest merged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::left::{self, BUCKETS, PROBLEM, SCALE};
use crate::classify::{State, human};
use crate::html::escape;
use crate::survey::{Assessed, Identity};

/// Most rows and columns the grid shows; the least urgent rest are merged into one.
const GRID_ROWS: usize = 60;
const GRID_COLUMNS: usize = 40;

/// The grid as drawn.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    rows: Vec<String>,
    columns: Vec<String>,
    grid: Vec<Vec<Option<Cell>>>,
    nodes: usize,
    services: usize,
}

/// A group of credentials: the least time left, how many have a problem, how many fall in each
/// bucket of the time-left scale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    min_left: Option<i64>,
    problems: usize,
    credentials: usize,
    buckets: [usize; BUCKETS],
}

impl Cell {
    /// One credential, judged at `as_of`.
    fn of(c: &Assessed, as_of: chrono::DateTime<chrono::Utc>) -> Cell {
        let min_left = c.window.map(|w| (w.not_after - as_of).num_seconds());
        let mut buckets = [0; BUCKETS];
        if let Some(left) = min_left {
            buckets[left::bucket(c.kind, left)] += 1;
        }
        Cell {
            min_left,
            problems: usize::from(c.verdict.state == State::Problem),
            credentials: 1,
            buckets,
        }
    }

    fn merge(&mut self, other: Cell) {
        self.min_left = match (self.min_left, other.min_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.problems += other.problems;
        self.credentials += other.credentials;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
    }

    /// Smaller is more urgent.
    fn urgency(&self) -> i64 {
        if self.problems > 0 { i64::MIN } else { self.min_left.unwrap_or(i64::MAX) }
    }

    /// Fill, ink and the mark written in the cell: the fewest whole days left (`×` past the
    /// expiry date, `!` a problem, `?` nothing readable).
    fn look(&self) -> (&'static str, &'static str, String) {
        if self.problems > 0 {
            return (PROBLEM.1, PROBLEM.2, "!".to_string());
        }
        let Some(first) = self.buckets.iter().position(|n| *n > 0) else {
            return ("#ffffff", "#58636e", "?".to_string());
        };
        let (_, fill, ink) = SCALE[first];
        let mark = match (first, self.min_left) {
            (0, _) | (_, None) => "×".to_string(),
            (_, Some(s)) if s >= 100 * 86_400 => "99+".to_string(),
            (_, Some(s)) => (s / 86_400).to_string(),
        };
        (fill, ink, mark)
    }
}

/// Keeps the `max` most urgent names; the rest become one group, named last.
fn pick(urgency: &BTreeMap<&str, i64>, max: usize) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut names: Vec<(&str, i64)> = urgency.iter().map(|(n, u)| (*n, *u)).collect();
    let kept: Vec<&str> = if names.len() <= max {
        names.iter().map(|(n, _)| *n).collect()
    } else {
        names.sort_by_key(|(n, u)| (*u, *n));
        let mut kept: Vec<&str> = names[..max - 1].iter().map(|(n, _)| *n).collect();
        kept.sort_unstable();
        kept
    };
    let mut labels: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
    let rest = urgency.len() - kept.len();
    if rest > 0 {
        labels.push(crate::count::count(rest, "other", "others"));
    }
    let mut slot = BTreeMap::new();
    for (n, _) in &names {
        let at = kept.binary_search(n).unwrap_or(labels.len() - 1);
        slot.insert(n.to_string(), at);
    }
    (labels, slot)
}

/// A node's cells, by service number.
type Cells = Vec<(u32, Cell)>;

/// The grid's cells as the identities pass: node by node (they pass in node order), only the
/// [`GRID_ROWS`] most urgent nodes are kept apart, the rest merged service by service into one
/// row as they drop out, so that it holds a few rows, not the fleet.
#[derive(Default)]
pub(super) struct Grid {
    /// The node being passed, and its cells by service (numbered as in `service_names`).
    /// An identity is one (node, service): a node's cells come one per service, in order.
    current: Option<(String, Cells)>,
    /// The most urgent nodes so far: (urgency, name, cells by service).
    kept: Vec<(i64, String, Cells)>,
    /// Cells of the nodes that dropped out, by service.
    others: BTreeMap<u32, Cell>,
    nodes: usize,
    /// Each service name once, its number, and its least time left over all nodes.
    service_numbers: std::collections::HashMap<String, u32>,
    service_names: Vec<String>,
    service_urgency: Vec<i64>,
}

impl Grid {
    pub(super) fn add(&mut self, i: &Identity, as_of: chrono::DateTime<chrono::Utc>) {
        if self.current.as_ref().is_none_or(|(node, _)| *node != i.node()) {
            self.close_node();
            self.current = Some((i.node().to_string(), Vec::new()));
        }
        let number = match self.service_numbers.get(i.service()) {
            Some(n) => *n,
            None => {
                let n = u32::try_from(self.service_names.len()).unwrap_or(u32::MAX);
                self.service_numbers.insert(i.service().to_string(), n);
                self.service_names.push(i.service().to_string());
                self.service_urgency.push(i64::MAX);
                n
            }
        };
        let Some((_, cells)) = &mut self.current else {
            unreachable!("set above")
        };
        let mut cell = Cell::default();
        for c in i.credentials() {
            cell.merge(Cell::of(c, as_of));
        }
        cells.push((number, cell));
    }

    /// Files the node just passed: kept apart if among the most urgent, else merged.
    fn close_node(&mut self) {
        let Some((node, cells)) = self.current.take() else {
            return;
        };
        self.nodes += 1;
        let urgency = cells.iter().map(|(_, c)| c.urgency()).min().unwrap_or(i64::MAX);
        for (service, cell) in &cells {
            let least = &mut self.service_urgency[*service as usize];
            *least = (*least).min(cell.urgency());
        }
        self.kept.push((urgency, node, cells));
        if self.kept.len() > GRID_ROWS {
            self.drop_least_urgent();
        }
    }

    /// Merges the least urgent kept node (by urgency, then name) into the others.
    fn drop_least_urgent(&mut self) {
        let Some(at) = (0..self.kept.len()).max_by(|a, b| {
            let (a, b) = (&self.kept[*a], &self.kept[*b]);
            (a.0, &a.1).cmp(&(b.0, &b.1))
        }) else {
            return;
        };
        let (_, _, cells) = self.kept.swap_remove(at);
        for (service, cell) in cells {
            self.others.entry(service).or_default().merge(cell);
        }
    }

    /// The grid to draw: row and column labels, and the merged cell at each place.
    fn layout(mut self) -> Layout {
        self.close_node();
        if self.nodes > GRID_ROWS {
            // As `pick` does: the most urgent less one, and one row for the rest.
            self.drop_least_urgent();
        }
        self.kept.sort_by(|a, b| a.1.cmp(&b.1));
        let mut rows: Vec<String> = self.kept.iter().map(|(_, n, _)| n.clone()).collect();
        if self.nodes > rows.len() {
            rows.push(crate::count::count(self.nodes - rows.len(), "other", "others"));
        }
        let urgency: BTreeMap<&str, i64> = self
            .service_names
            .iter()
            .map(String::as_str)
            .zip(self.service_urgency.iter().copied())
            .collect();
        let (columns, column_of) = pick(&urgency, GRID_COLUMNS);
        let mut grid = vec![vec![None::<Cell>; columns.len()]; rows.len()];
        let others: Cells = match self.nodes > self.kept.len() {
            true => self.others.iter().map(|(s, c)| (*s, *c)).collect(),
            false => Vec::new(),
        };
        let by_row = self.kept.iter().map(|(_, _, cells)| cells).chain([&others]);
        for (r, cells) in by_row.enumerate() {
            for (service, cell) in cells {
                let slot = &mut grid[r][column_of[&self.service_names[*service as usize]]];
                slot.get_or_insert_with(Cell::default).merge(*cell);
            }
        }
        Layout {
            rows,
            columns,
            grid,
            nodes: self.nodes,
            services: self.service_names.len(),
        }
    }

    pub(super) fn write(self, out: &mut String) {
        let layout = self.layout();
        layout.write_grid(out);
        layout.write_numbers(out);
    }
}

impl Layout {
    /// The grid, each cell coloured by the time-left scale and marked with its fewest days left.
    fn write_grid(&self, out: &mut String) {
        let merged = self.rows.len() < self.nodes || self.columns.len() < self.services;
        let _ = writeln!(
            out,
            "<h2>Least time left by node and service</h2>\n<p class=\"meta\">\
             <span id=\"grid-nodes\">{}</span> nodes × <span id=\"grid-services\">{}</span> \
             services{}. Each cell shows the fewest whole days left among its credentials \
             (× past the expiry date, ! a problem, ? not readable by you); the table below gives \
             each row's numbers.</p>",
            self.nodes,
            self.services,
            if merged {
                "; the most urgent are shown, the rest merged into \"others\""
            } else {
                ""
            }
        );
        out.push_str("<table class=\"grid\"><tr><th></th>");
        for c in &self.columns {
            let _ = write!(out, "<th class=\"col\">{}</th>", escape(c));
        }
        out.push_str("</tr>\n");
        for (r, row) in self.rows.iter().enumerate() {
            let _ = write!(out, "<tr><th>{}</th>", escape(row));
            for (c, column) in self.columns.iter().enumerate() {
                match &self.grid[r][c] {
                    None => out.push_str("<td></td>"),
                    Some(cell) => {
                        let (fill, ink, mark) = cell.look();
                        let _ = write!(
                            out,
                            "<td style=\"background:{fill};color:{ink}\" title=\"{} / {}: {}\">\
                             {mark}</td>",
                            escape(row),
                            escape(column),
                            crate::count::count(cell.credentials, "credential", "credentials"),
                        );
                    }
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
        left::legend(out);
    }

    /// The grid's numbers, row by row: credentials per bucket of the time-left scale, problems,
    /// and the least time left (what a cell's colour says, readable without a mouse).
    fn write_numbers(&self, out: &mut String) {
        out.push_str(
            "<h3>The grid's numbers, by node</h3>\n<table id=\"grid-numbers\"><tr><th>node</th>\
             <th class=\"num\">credentials</th>",
        );
        for (label, _, _) in SCALE {
            let _ = write!(out, "<th class=\"num\">{label}</th>");
        }
        out.push_str("<th class=\"num\">problems</th><th>least left</th></tr>\n");
        for (r, name) in self.rows.iter().enumerate() {
            let mut row = Cell::default();
            for cell in self.grid[r].iter().flatten() {
                row.merge(*cell);
            }
            let _ = write!(
                out,
                "<tr class=\"grid-row\"><td>{}</td><td class=\"num\" data-n=\"credentials\">{}</td>",
                escape(name),
                row.credentials
            );
            for (b, n) in row.buckets.iter().enumerate() {
                let _ = write!(out, "<td class=\"num\" data-n=\"bucket-{b}\">{n}</td>");
            }
            let least = row
                .min_left
                .map_or_else(|| "-".to_string(), |s| human(chrono::TimeDelta::seconds(s)));
            let _ = writeln!(
                out,
                "<td class=\"num\" data-n=\"problems\">{}</td><td>{}</td></tr>",
                row.problems,
                escape(&least)
            );
        }
        out.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Kind, Verdict};
    use crate::inspect::Window;

    /// The grid as it was made from the whole fleet held at once: every (node, service) cell,
    /// then the most urgent nodes and services picked.
    fn held_layout(fleet: &[Identity], as_of: chrono::DateTime<chrono::Utc>) -> Layout {
        let mut cells: BTreeMap<(&str, &str), Cell> = BTreeMap::new();
        for i in fleet {
            let cell = cells.entry((i.node(), i.service())).or_default();
            for c in i.credentials() {
                cell.merge(Cell::of(c, as_of));
            }
        }
        let mut node_urgency: BTreeMap<&str, i64> = BTreeMap::new();
        let mut service_urgency: BTreeMap<&str, i64> = BTreeMap::new();
        for ((node, service), cell) in &cells {
            let u = cell.urgency();
            node_urgency.entry(node).and_modify(|x| *x = (*x).min(u)).or_insert(u);
            service_urgency.entry(service).and_modify(|x| *x = (*x).min(u)).or_insert(u);
        }
        let (rows, row_of) = pick(&node_urgency, GRID_ROWS);
        let (columns, column_of) = pick(&service_urgency, GRID_COLUMNS);
        let mut grid = vec![vec![None::<Cell>; columns.len()]; rows.len()];
        for ((node, service), cell) in &cells {
            let slot = &mut grid[row_of[*node]][column_of[*service]];
            slot.get_or_insert_with(Cell::default).merge(*cell);
        }
        Layout {
            rows,
            columns,
            grid,
            nodes: node_urgency.len(),
            services: service_urgency.len(),
        }
    }

    fn identity(node: usize, service: usize, left_days: i64, state: State) -> Identity {
        let not_after = chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::days(left_days);
        let credential = |kind| Assessed {
            kind,
            verdict: Verdict::new(state, String::new()),
            window: (state != State::Problem).then_some(Window {
                not_before: not_after - chrono::TimeDelta::days(90),
                not_after,
            }),
            sha256: None,
            self_rotates: false,
            key_alg: None,
            names: None,
            key_not_readable: false,
            signed_by: None,
        };
        Identity {
            dir: None,
            id: crate::names::IdentityId::new(&format!("node-{node:03}"), &format!("svc-{service:02}"))
                .unwrap(),
            cert: Some(credential(Kind::Cert)),
            token: (!service.is_multiple_of(3)).then(|| credential(Kind::Token)),
        }
    }

    /// Fleets below, at and above the grid's limits, with ties of urgency and problems: the
    /// grid made node by node as the identities pass is the grid made from the whole fleet.
    #[test]
    fn the_streamed_grid_is_the_grid_of_the_whole_fleet() {
        let as_of = chrono::DateTime::UNIX_EPOCH;
        for (nodes, services) in [(3, 4), (GRID_ROWS, GRID_COLUMNS), (GRID_ROWS + 1, 5), (150, 55)] {
            let mut fleet = Vec::new();
            for n in 0..nodes {
                for s in 0..services {
                    // Urgency repeats, so that ties are broken by name as `pick` does.
                    let left = ((n * 7 + s * 13) % 97) as i64 - 5;
                    let state = match (n * services + s) % 41 {
                        0 => State::Problem,
                        _ if left < 30 => State::Due,
                        _ => State::Healthy,
                    };
                    fleet.push(identity(n, s, left, state));
                }
            }
            let mut grid = Grid::default();
            for i in &fleet {
                grid.add(i, as_of);
            }
            assert_eq!(grid.layout(), held_layout(&fleet, as_of), "{nodes} × {services}");
        }
    }
}
