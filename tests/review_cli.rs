//! The reviewer's page is the plan file (docs/design.md §5, `apply PLAN --dry-run --format
//! html`): a plan edited by hand is rendered with its own sha256 and what `apply` would do with
//! it now, the page's counts are the dry run's, nothing is written in the fleet, and the run
//! that follows prints and records the same sha256.

mod common;

use common::browser::{number, render, self_contained, text_of};
use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;
use sha2::Digest as _;

/// `plan` with its first line that starts with `starts` and holds `holds` changed by `edit`
/// (`None`: deleted); returns the identity (`nodes/<node>/<service>`) whose line it was.
/// `apply PLAN --dry-run --format html -o OUT`: the review page of the plan file `plan`.
fn review_page<'a>(plan: &'a str, out: &'a str) -> [&'a str; 7] {
    ["apply", plan, "--dry-run", "--format", "html", "-o", out]
}

fn edit_line(
    plan: &mut Vec<String>,
    starts: &str,
    holds: &str,
    edit: Option<(&str, &str)>,
) -> String {
    let at = plan
        .iter()
        .position(|l| l.starts_with(starts) && l.contains(holds))
        .unwrap_or_else(|| panic!("no {starts}… {holds} line in the plan"));
    let field = |name: &str| {
        let line = plan[..at]
            .iter()
            .rev()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap();
        line.split('"').nth(1).unwrap().to_string()
    };
    let dir = format!("nodes/{}/{}", field("node"), field("service"));
    match edit {
        Some((from, to)) => plan[at] = plan[at].replace(from, to),
        None => {
            plan.remove(at);
        }
    }
    dir
}

#[test]
fn the_review_page_is_the_plan_file_with_what_apply_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    // Four identities due (services that renew nothing by themselves) and two fresh (issued at
    // the run date: kept).
    let ids: Vec<_> = (0..6)
        .map(|i| {
            let ago = if i < 4 { 80 } else { 0 };
            IdentitySpec::new(&format!("node-{}", i % 2), &format!("svc-{i}"), issued(ago))
        })
        .collect();
    build(&root, &ca_spec(KeyAlg::P256), &ids);
    let plan = dir.path().join("plan.toml");
    let plan_arg = plan.to_str().unwrap();
    let (code, _, err) = run(&root, &["plan", "-o", plan_arg]);
    assert_eq!(code, 3, "work is due: {err}");

    // Edited by hand: one identity's token line deleted, one fresh certificate flipped from
    // keep to rotate.
    let text = std::fs::read_to_string(&plan).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let tokenless = edit_line(&mut lines, "token = {", "action = \"rotate\"", None);
    let flipped = edit_line(
        &mut lines,
        "cert = {",
        "action = \"keep\"",
        Some(("action = \"keep\"", "action = \"rotate\"")),
    );
    std::fs::write(&plan, lines.join("\n") + "\n").unwrap();
    let sha256 = hex::encode(sha2::Sha256::digest(std::fs::read(&plan).unwrap()));

    let before = snapshot(&root);
    let review = dir.path().join("review.html");
    let review_arg = review.to_str().unwrap();
    let (code, stdout, err) = run(&root, &review_page(plan_arg, review_arg));
    // The exit code is the run's: 3, one identity refused.
    assert_eq!((code, stdout.as_str()), (3, ""), "{err}");
    let (code, json, err) = run(&root, &["apply", plan_arg, "--dry-run", "--format", "json"]);
    assert_eq!(code, 3, "{err}");
    let dry: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(dry["plan_file_sha256"], sha256.as_str());

    let html = std::fs::read_to_string(&review).unwrap();
    self_contained(&html, &root);
    let dom = render(&review, "review");
    assert_eq!(
        text_of(&dom, "plan-sha256"),
        sha256,
        "the page shows the file's sha256"
    );
    assert_eq!(text_of(&dom, "plan-file"), plan_arg);
    let plan_field = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap();
        line.split('"').nth(1).unwrap().to_string()
    };
    assert_eq!(text_of(&dom, "plan-policy"), plan_field("policy_sha256"));
    assert_eq!(text_of(&dom, "plan-ca"), plan_field("ca_sha256"));
    assert_eq!(text_of(&dom, "plan-ca-stage"), plan_field("ca_stage"));
    assert_eq!(text_of(&dom, "plan-as-of"), plan_field("as_of"));
    assert_eq!(text_of(&dom, "run-as-of"), AS_OF);
    let counts = &dry["counts"];
    let count = |name: &str| counts[name].as_u64().unwrap() as usize;
    assert_eq!(number(&dom, "review-done"), count("done"));
    assert_eq!(number(&dom, "review-skipped"), count("skipped"));
    assert_eq!(number(&dom, "review-failed"), count("failed"));
    assert_eq!(number(&dom, "review-credentials"), count("credentials"));
    assert_eq!((count("done"), count("skipped")), (4, 1));
    assert_eq!(dom.matches("class=\"rotate-row\"").count(), count("done"));
    assert_eq!(
        number(&dom, "refused-count"),
        count("skipped") + count("failed")
    );
    let refused = dom
        .split("id=\"refused\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(refused.contains(&flipped), "{flipped} refused: {refused}");
    assert!(
        refused.contains("cert.pem: the plan asks rotate; the fleet judges keep"),
        "and why: {refused}"
    );
    let rotating = dom
        .split("id=\"rotate\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(
        rotating.contains(&tokenless)
            && rotating.contains("the plan lists no line for token.jwt: not rotated"),
        "{rotating}"
    );
    assert!(text_of(&dom, "policy").starts_with("built-in"));

    // Nothing was written: not in the fleet, not under .rekey.
    assert_eq!(
        snapshot(&root),
        before,
        "the dry run wrote nothing in the fleet"
    );
    assert!(reports(&root).is_empty(), "and recorded no run");

    // The same page on stdout without -o.
    let (code, stdout, err) = run(&root, &["apply", plan_arg, "--dry-run", "--format", "html"]);
    assert_eq!(code, 3, "{err}");
    assert!(stdout.starts_with("<!DOCTYPE html>") && stdout.contains(&sha256));

    // The run prints and records the same sha256.
    let (code, stdout, err) = run(&root, &["apply", plan_arg]);
    assert_eq!(code, 3, "{err}");
    assert!(
        stdout.contains(&format!("plan file sha256: {sha256}")),
        "{stdout}"
    );
    let recorded = reports(&root);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["plan_file_sha256"], sha256.as_str());
    assert_eq!(recorded[0]["counts"]["done"], counts["done"]);
}

#[test]
fn the_review_page_is_only_a_dry_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    build(
        &root,
        &ca_spec(KeyAlg::P256),
        &[IdentitySpec::new("n1", "svc", issued(80))],
    );
    let plan = dir.path().join("plan.toml");
    let plan_arg = plan.to_str().unwrap();
    let (code, _, err) = run(&root, &["plan", "-o", plan_arg]);
    assert_eq!(code, 3, "{err}");
    let page = dir.path().join("review.html");
    let page_arg = page.to_str().unwrap();
    let in_fleet = root.join("nodes/review.html");
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "a run makes no page",
            vec!["apply", plan_arg, "--format", "html", "-o", page_arg],
            "--format html is the review page of a plan file, made by its dry run",
        ),
        (
            "-o is the page's",
            vec!["apply", plan_arg, "--dry-run", "-o", page_arg],
            "-o writes the review page of the plan file",
        ),
        (
            "rotate makes no page",
            vec!["rotate", "--format", "html", "--dry-run"],
            "--format html is the review page of a plan file",
        ),
        (
            "rollback makes no page",
            vec!["rollback", "20261128T000000Z", "--format", "html"],
            "invalid value 'html' for '--format <FORMAT>'",
        ),
    ];
    let before = snapshot(&root);
    for (name, args, says) in cases {
        let (code, stdout, err) = run_unpinned(&root, &args);
        assert_eq!((code, stdout.as_str()), (2, ""), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!page.exists(), "{name}");
    }
    let in_fleet_arg = in_fleet.to_str().unwrap();
    let (code, _, err) = run(&root, &review_page(plan_arg, in_fleet_arg));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is in the fleet"), "{err}");
    assert_eq!(snapshot(&root), before);
    // The page never replaces the plan it reviews, named directly or through a link.
    let written = std::fs::read(&plan).unwrap();
    let link = dir.path().join("plan-link.toml");
    std::os::unix::fs::symlink(&plan, &link).unwrap();
    for target in [plan_arg, link.to_str().unwrap()] {
        let args = review_page(plan_arg, target);
        let (code, _, err) = run(&root, &args);
        assert_eq!(code, 1, "{target}: {err}");
        assert!(err.contains("is the plan file itself"), "{target}: {err}");
        assert_eq!(std::fs::read(&plan).unwrap(), written, "{target}");
    }
}

#[test]
fn the_review_page_lists_at_most_two_thousand_rotations_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    fleet(&root, 2_050, 80);
    let plan = dir.path().join("plan.toml");
    let plan_arg = plan.to_str().unwrap();
    let (code, _, err) = run(&root, &["plan", "-o", plan_arg]);
    assert_eq!(code, 3, "{err}");
    let review = dir.path().join("review.html");
    let review_arg = review.to_str().unwrap();
    let args = review_page(plan_arg, review_arg);
    let (code, _, err) = run(&root, &args);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&review).unwrap();
    assert_eq!(number(&html, "review-done"), 2_050);
    assert_eq!(html.matches("class=\"rotate-row\"").count(), 2_000);
    assert_eq!(number(&html, "rotate-more"), 50);
}
