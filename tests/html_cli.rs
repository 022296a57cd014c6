//! The HTML reports (docs/design.md §5, `status --format html`, `plan --format html`) rendered
//! in headless Chromium (the `chromium-headless-shell` or `chromium` Debian package; .ci/run
//! installs it): the rendered DOM holds the expected counts, the pages are self-contained, and
//! a screenshot of each is kept under target/tmp/html-screenshots/, beside the page.

mod common;

use std::path::{Path, PathBuf};

use common::browser::{number, render, self_contained, text_of};
use common::*;
use rekey::catalog::every_case;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

fn page(root: &Path, args: &[&str], name: &str) -> (PathBuf, String) {
    let out = root.parent().unwrap().join(name);
    let (code, stdout, stderr) = run(root, &[args, &["-o", out.to_str().unwrap()]].concat());
    assert!(matches!(code, 0 | 3 | 4), "{stderr}");
    assert_eq!(stdout, "");
    let html = std::fs::read_to_string(&out).unwrap();
    (out, html)
}

#[test]
fn the_expiry_report_renders_with_the_fleets_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    let (_, json, _) = run(&root, &["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (file, html) = page(&root, &["status", "--format", "html"], "expiry.html");
    self_contained(&html, &root);
    let dom = render(&file, "expiry");

    for (state, n) in doc["totals"]["credentials_by_state"].as_object().unwrap() {
        assert_eq!(
            number(&dom, &format!("count-{state}")) as u64,
            n.as_u64().unwrap(),
            "{state}"
        );
    }
    assert_eq!(number(&dom, "identities"), 22);
    assert_eq!(number(&dom, "credentials"), 40);
    let attention = doc["totals"]["identities_by_state"]["recover"]
        .as_u64()
        .unwrap()
        + doc["totals"]["identities_by_state"]["problem"]
            .as_u64()
            .unwrap();
    assert_eq!(number(&dom, "attention-count") as u64, attention);
    assert_eq!(
        dom.matches("class=\"attention-row\"").count() as u64,
        attention
    );
    assert_eq!(number(&dom, "ca-days-left"), 3285);
    let within_120_days = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["seconds_left"].as_i64().map(|s| (c, s)))
        .filter(|(c, s)| (if c["kind"] == "cert" { *s >= 0 } else { *s > 0 }) && *s < 120 * 86_400)
        .count();
    assert_eq!(number(&dom, "timeline-total"), within_120_days);
    let drawn = sum_of_n(&dom, "bar");
    assert_eq!(drawn, within_120_days, "the bars add up to the total");
    assert_eq!(
        (number(&dom, "grid-nodes"), number(&dom, "grid-services")),
        (5, 6)
    );
    assert!(text_of(&dom, "policy").starts_with("built-in"));
}

#[test]
fn the_plan_report_renders_with_the_plans_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &every_case(as_of(), KeyAlg::P256),
    );
    std::fs::write(root.join("rekey.toml"), "version = 1\nvalidity_days = 60\n").unwrap();
    let (_, plan, _) = run(&root, &["plan"]);
    let (file, html) = page(&root, &["plan", "--format", "html"], "plan.html");
    self_contained(&html, &root);
    let dom = render(&file, "plan");
    for action in ["rotate", "keep", "recover", "skip"] {
        let planned = plan.matches(&format!("action = \"{action}\"")).count();
        assert_eq!(number(&dom, &format!("plan-{action}")), planned, "{action}");
    }
    assert_eq!(number(&dom, "identities"), 22);
    assert_eq!(
        number(&dom, "attention-count"),
        13,
        "2 recover and 11 with problems"
    );
    assert_eq!(
        text_of(&dom, "new-not-after"),
        "2027-01-27T00:00:00Z",
        "60 days"
    );
    assert!(
        text_of(&dom, "policy").contains("rekey.toml (sha256 "),
        "{dom}"
    );
    let nodes = dom
        .split("id=\"by-node\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(nodes.matches("class=\"group-row\"").count(), 5);
}

#[test]
fn large_fleets_are_aggregated_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    // 90 nodes and 240 services: more than the grid's 60 rows and 40 columns and the tables'
    // 200 rows; the oldest identities have expired tokens (recover).
    let ids: Vec<_> = (0..240)
        .map(|i| {
            IdentitySpec::new(
                &format!("node-{:02}", i % 90),
                &format!("svc-{i:03}"),
                issued(i as i64 % 100),
            )
        })
        .collect();
    build(&root, &ca_spec(KeyAlg::P256), &ids);
    let (file, _) = page(&root, &["status", "--format", "html"], "expiry.html");
    let dom = render(&file, "expiry-large");
    assert_eq!(
        (number(&dom, "grid-nodes"), number(&dom, "grid-services")),
        (90, 240)
    );
    let grid = dom
        .split("class=\"grid\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(grid.matches("<tr>").count(), 1 + 60, "header and 60 rows");
    assert!(
        grid.contains("31 others") && grid.contains("201 others"),
        "merged rows and columns"
    );
    let (file, _) = page(&root, &["plan", "--format", "html"], "plan.html");
    let dom = render(&file, "plan-large");
    let services = dom
        .split("id=\"by-service\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(services.matches("class=\"group-row\"").count(), 199);
    assert!(services.contains("41 others"), "the rest summed in one row");
}

/// The numbers of the grid's table (`#grid-numbers`), summed over its rows: credentials, each
/// bucket of the time-left scale, problems.
fn grid_numbers(dom: &str) -> std::collections::BTreeMap<String, usize> {
    let table = dom
        .split("id=\"grid-numbers\"")
        .nth(1)
        .expect("a table of the grid's numbers")
        .split("</table>")
        .next()
        .unwrap();
    let mut sums = std::collections::BTreeMap::new();
    for cell in table.split("data-n=\"").skip(1) {
        let (key, rest) = cell.split_once('"').unwrap();
        let n: usize = rest[rest.find('>').unwrap() + 1..rest.find('<').unwrap()]
            .parse()
            .unwrap();
        *sums.entry(key.to_string()).or_default() += n;
    }
    sums
}

/// The expiry page of `root` at `as_of` checked against `status --format json` at the same
/// instant: every count the page shows is the CLI's; screenshot kept as `name`.
fn expiry_page_agrees_with_the_cli(root: &Path, as_of: &str, name: &str) -> String {
    let json = rekey()
        .args(["status", "--format", "json", "--as-of", as_of, "--root"])
        .arg(root)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let file = root.parent().unwrap().join(format!("{name}.html"));
    let out = rekey()
        .args(["status", "--format", "html", "--as-of", as_of, "-o"])
        .arg(&file)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 3 | 4)));
    let html = std::fs::read_to_string(&file).unwrap();
    self_contained(&html, root);
    assert!(!html.contains("Hover"), "nothing asks for a mouse");
    let dom = render(&file, name);
    let totals = &doc["totals"];
    for (state, n) in totals["credentials_by_state"].as_object().unwrap() {
        assert_eq!(
            number(&dom, &format!("count-{state}")) as u64,
            n.as_u64().unwrap(),
            "{state}"
        );
    }
    let past = totals["past_expiry"].as_u64().unwrap() as usize;
    assert_eq!(number(&dom, "past-expiry"), past);
    let grid = grid_numbers(&dom);
    assert_eq!(
        grid["credentials"],
        totals["credentials"].as_u64().unwrap() as usize
    );
    assert_eq!(
        grid["bucket-0"], past,
        "one meaning of past expiry, cards and grid"
    );
    let problems = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "problem")
        .count();
    assert_eq!(grid["problems"], problems);
    // The week table adds up to the timeline's total.
    let weeks = sum_of_n(&dom, "week-row");
    assert_eq!(weeks, number(&dom, "timeline-total"));
    // The grid's colours are the time-left scale's, never the states'.
    let grid_table = dom
        .split("class=\"grid\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    for state in [
        "#2e7d32", "#f9a825", "#ef6c00", "#e53935", "#8e0000", "#7b1fa2",
    ] {
        assert!(
            !grid_table.contains(state),
            "state colour {state} in the grid"
        );
    }
    dom
}

#[test]
fn the_expiry_page_reads_true_at_ten_and_at_fifteen_hundred_identities() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let ids: Vec<_> = (0..10)
        .map(|i| IdentitySpec::new(&format!("n{}", i % 3), &format!("svc{i}"), issued(8 * i)))
        .collect();
    build(&small, &ca_spec(KeyAlg::P256), &ids);
    expiry_page_agrees_with_the_cli(&small, AS_OF, "expiry-10");

    // 1,500 identities, issued over 100 days, a few broken; seen 70 days later, when many
    // self-renewing certificates are past their date (state stalled, not expired).
    let large = dir.path().join("large");
    let ids = rekey::catalog::spread(1500, 100, as_of());
    build(&large, &ca_spec(KeyAlg::P256), &ids);
    let later = (as_of() + days(70)).to_rfc3339();
    let dom = expiry_page_agrees_with_the_cli(&large, &later, "expiry-1500");
    assert_eq!(number(&dom, "identities"), 1500);
    assert!(
        number(&dom, "past-expiry") > 0,
        "some are past their date by then"
    );
    // A day of a few credentials is drawn beside the busiest day: every bar at least 3 px.
    for bar in dom.split("class=\"bar\"").skip(1).take(400) {
        let at = bar.find("height=\"").unwrap() + 8;
        let h: usize = bar[at..at + bar[at..].find('"').unwrap()].parse().unwrap();
        assert!(h >= 1, "{bar}");
    }
}

/// The sum of the `data-n` numbers of every element of `class` in `dom`.
fn sum_of_n(dom: &str, class: &str) -> usize {
    dom.split(&format!("class=\"{class}\""))
        .skip(1)
        .map(|element| {
            let at = element.find("data-n=\"").unwrap() + 8;
            element[at..at + element[at..].find('"').unwrap()]
                .parse::<usize>()
                .unwrap()
        })
        .sum()
}
