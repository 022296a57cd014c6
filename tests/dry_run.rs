//! A dry run is the run with the sink that writes nothing: for generated cases (fleets of mixed
//! states, hand-edited plans, files changed after a run, pruned runs, `--force`, selectors), the
//! dry run's JSON equals the report the real run then writes on the same fleet, identity by
//! identity and file by file, and the dry run writes nothing under the root. Seeded and
//! deterministic; cases run in parallel on copies of a few fleets built once.

mod common;

use std::path::Path;
use std::sync::Mutex;

use common::{AS_OF, as_of, build, ca_spec, copy, days};
use rekey::keys::KeyAlg;
use serde_json::Value;

/// How many generated cases the property runs (at least 300).
const CASES: u64 = 320;

/// A small, seeded generator (splitmix64): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, in_four: u64) -> bool {
        self.next() % 4 < in_four
    }

    fn pick<'a, T>(&mut self, of: &'a [T]) -> &'a T {
        &of[self.below(of.len())]
    }
}

use common::run_unpinned as rekey;

/// Everything under `root`, rekey's own state included: path → contents (directories: empty).
fn everything(root: &Path) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let bytes = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.path().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// A report with what differs between any two runs masked: the run id, the times (a rollback's
/// run date is the clock, and a warning may quote the clock), and what a rotation draws at
/// random (new serials, new file digests); `dry_run` dropped.
fn comparable(report: &Value) -> Value {
    let mut r = report.clone();
    let o = r.as_object_mut().expect("a report is an object");
    for key in [
        "run_id",
        "started",
        "finished",
        "duration_seconds",
        "dry_run",
    ] {
        o.remove(key);
    }
    common::without_the_clock(o);
    let rotating = o["command"] != "rollback";
    if !rotating {
        // A rollback's run date is the wall clock: a timestamp.
        o.remove("as_of");
    }
    for i in o["identities"].as_array_mut().unwrap() {
        if rotating {
            for f in i["files"].as_array_mut().into_iter().flatten() {
                f["new_sha256"] = Value::Null;
            }
            if let Some(cert) = i.get_mut("cert") {
                cert["new_serial"] = Value::Null;
            }
        }
    }
    r
}

/// The identities of the base fleet: one in every state the catalog makes (less its RSA
/// identity, whose new key would only slow the property down), on P-256.
fn base_fleet(root: &Path) {
    let ids: Vec<_> = rekey::catalog::every_case(as_of(), KeyAlg::P256)
        .into_iter()
        .filter(|s| !matches!(s.key_alg, KeyAlg::Rsa { .. }))
        .collect();
    build(root, &ca_spec(KeyAlg::P256), &ids);
}

/// Two runs made on the base fleet: a rotation 20 days before AS_OF and a forced one of node n1
/// at AS_OF (rollback and prune have runs to act on).
fn with_history(base: &Path, root: &Path) -> [String; 2] {
    copy(base, root);
    let early = (as_of() - days(20)).to_rfc3339();
    let (code, _, err) = rekey(root, &["rotate", "--as-of", &early, "--no-hooks"]);
    assert!(matches!(code, 0 | 3 | 4), "{err}");
    let args = [
        "rotate",
        "--as-of",
        AS_OF,
        "--node",
        "n1",
        "--force",
        "--no-hooks",
    ];
    let (code, _, err) = rekey(root, &args);
    assert!(matches!(code, 0 | 3 | 4), "{err}");
    let runs: Vec<String> = std::fs::read_dir(root.join(".rekey/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    [runs[0].clone(), runs[1].clone()]
}

/// One generated case on the fleet at `root`: what it does before the command (edits, runs
/// made, files changed) and the command line, without `--dry-run`.
fn setup(
    rng: &mut Rng,
    (base, history): (&Path, &Path),
    root: &Path,
    runs: &[String; 2],
    scratch: &Path,
) -> Vec<String> {
    let command = rng.below(5);
    // Rollback and prune act on runs: the fleet with history; the rest, either fleet.
    copy(
        if command >= 3 || rng.chance(2) {
            history
        } else {
            base
        },
        root,
    );
    let as_of_choices = ["-10d", "0d", "5d", "-30d"];
    let at = (as_of()
        + chrono::TimeDelta::days(match *rng.pick(&as_of_choices) {
            "-10d" => -10,
            "5d" => 5,
            "-30d" => -30,
            _ => 0,
        }))
    .to_rfc3339();
    let nodes = ["n1", "n2", "n3", "n4", "n5"];
    let services = ["mocctl", "csi", "kva", "caph", "backup"];
    let mut select = Vec::new();
    match rng.below(4) {
        0 => select.extend(["--node".to_string(), rng.pick(&nodes).to_string()]),
        1 => select.extend(["--service".to_string(), rng.pick(&services).to_string()]),
        _ => {}
    }
    let force = rng.chance(1);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut args = match command {
        0 => s(&["rotate", "--as-of", &at]),
        1 => {
            let plan = scratch.join("plan.toml");
            let (code, _, err) = rekey(
                root,
                &["plan", "--as-of", &at, "-o", plan.to_str().unwrap()],
            );
            assert!(matches!(code, 0 | 3 | 4), "{err}");
            let text = std::fs::read_to_string(&plan).unwrap();
            std::fs::write(&plan, edit(rng, &text)).unwrap();
            s(&["apply", plan.to_str().unwrap(), "--as-of", &at])
        }
        2 => {
            select.retain(|_| false);
            let mut a = s(&["recover", "--reason", "property", "--as-of", &at]);
            match rng.below(2) {
                0 => a.push("--all".into()),
                _ => a.extend(["--node".into(), rng.pick(&nodes[..2]).to_string()]),
            }
            return with_flags(a, rng, true);
        }
        3 => {
            if rng.chance(2) {
                let (code, _, err) = rekey(root, &["prune", "--keep", "1"]);
                assert_eq!(code, 0, "{err}");
            }
            if rng.chance(2) {
                change_a_file(rng, root);
            }
            let run = rng.pick(runs).clone();
            if rng.chance(1) {
                let (code, _, err) = rekey(root, &["rollback", &run, "--no-hooks"]);
                assert!(matches!(code, 0 | 3), "{err}");
            }
            return vec![
                "rollback".into(),
                run,
                "--no-hooks".into(),
                "--format".into(),
                "json".into(),
            ];
        }
        _ => {
            let keep = (1 + rng.below(2)).to_string();
            return vec!["prune".into(), "--keep".into(), keep];
        }
    };
    if force {
        args.push("--force".into());
    }
    args.extend(select);
    with_flags(args, rng, false)
}

fn with_flags(mut args: Vec<String>, _rng: &mut Rng, recover: bool) -> Vec<String> {
    args.extend(["--no-hooks", "--format", "json"].map(String::from));
    if recover {
        args.push("--yes".into());
    }
    args
}

/// A plan edited by hand: a line deleted, or an action flipped.
fn edit(rng: &mut Rng, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let credential: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].starts_with("cert = {") || lines[n].starts_with("token = {"))
        .collect();
    if credential.is_empty() || rng.chance(1) {
        return text.to_string();
    }
    let n = *rng.pick(&credential);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match rng.below(3) {
        0 => {
            out.remove(n);
        }
        1 => out[n] = out[n].replace("action = \"keep\"", "action = \"rotate\""),
        _ => out[n] = out[n].replace("action = \"rotate\"", "action = \"keep\""),
    }
    out.join("\n") + "\n"
}

/// Appends a line to one credential file the runs replaced.
fn change_a_file(rng: &mut Rng, root: &Path) {
    let ids = [
        "nodes/n1/mocctl",
        "nodes/n1/csi",
        "nodes/n2/mocctl",
        "nodes/n1/backup",
    ];
    let file = root
        .join(rng.pick(&ids))
        .join(rng.pick(&["cert.pem", "token.jwt"]));
    if let Ok(mut text) = std::fs::read_to_string(&file) {
        text.push_str("# changed since the run\n");
        std::fs::write(&file, text).unwrap();
    }
}

/// The dry run of `args` at `root` and then the run itself: the dry run wrote nothing, exits
/// as the run does, and its report is the run's.
fn check(root: &Path, args: &[String], case: u64) {
    let what = format!("case {case}: rekey {}", args.join(" "));
    let mut dry: Vec<&str> = args.iter().map(String::as_str).collect();
    if dry[0] == "recover" {
        dry.retain(|a| *a != "--yes");
    } else {
        dry.push("--dry-run");
    }
    let before = everything(root);
    let (dry_code, dry_out, dry_err) = rekey(root, &dry);
    assert!(
        everything(root) == before,
        "{what}: the dry run wrote nothing\n{dry_err}"
    );
    let real: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = rekey(root, &real);
    assert_eq!(dry_code, code, "{what}: same exit\n{dry_err}\n{err}");
    if args[0] == "prune" {
        let said = dry_out
            .replace("would remove", "removed")
            .replace("would keep", "kept");
        assert_eq!(said, out, "{what}");
        return;
    }
    if out.trim().is_empty() {
        assert!(dry_out.trim().is_empty(), "{what}: {dry_out}");
        return;
    }
    let real: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}: {out}"));
    let dry: Value =
        serde_json::from_str(&dry_out).unwrap_or_else(|e| panic!("{what}: {e}: {dry_out}"));
    assert_eq!(dry["dry_run"], true, "{what}");
    assert_eq!(
        comparable(&dry),
        comparable(&real),
        "{what}\n{dry_err}\n{err}"
    );
}

#[test]
fn a_dry_run_reports_what_its_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    base_fleet(&base);
    let history = dir.path().join("history");
    let runs = with_history(&base, &history);
    let next = Mutex::new(0u64);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (dir, base, history, runs, next) = (dir.path(), &base, &history, &runs, &next);
            scope.spawn(move || {
                let work = dir.join(format!("w{t}"));
                std::fs::create_dir_all(&work).unwrap();
                loop {
                    let case = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    if case > CASES {
                        break;
                    }
                    let mut rng = Rng(case.wrapping_mul(0x2545_F491_4F6C_DD1D));
                    let root = work.join("fleet");
                    let args = setup(&mut rng, (base, history), &root, runs, &work);
                    check(&root, &args, case);
                }
            });
        }
    });
}
