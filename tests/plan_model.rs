//! A plan can only narrow what rekey would do; it can never widen it. This seeded model-based
//! test builds the demo fleet (every state) once, plans it, then applies hundreds of hand-edited
//! variants of that plan (duplicated, dropped, reordered and foreign blocks; flipped actions;
//! edited dates, digests, reasons and header fields), each to a fresh copy of the fleet, and
//! checks from outside: (a) no panic and a documented exit code; (b) no credential file emptied,
//! cut short or lost, no temporary file left; (c) every credential wholly old or wholly new, as
//! the run's report says; (d) only credentials the fleet judges `rotate` *and* the edited plan
//! says `rotate` changed (nothing in `recover` or `problem`, nothing kept, a plan naming an
//! identity twice refused with nothing written); (e) every new credential is `fresh` and valid for
//! exactly 90 days from the run date (and, now and then, `openssl verify` agrees); (f) no audit
//! log; (g) rolling the run back restores every file byte for byte.
//!
//! Knobs: `REKEY_MODEL_PLANS` (default 500), `REKEY_MODEL_SEED` (decimal or 0x-hex; a fixed
//! default), `REKEY_MODEL_ONLY=I` replays plan I alone. Every failure names the seed, the plan's
//! index and its mutations. Plan 0 is the unedited plan, which must rotate exactly what the fleet
//! judges due.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{AS_OF, as_of, days, rekey, snapshot};
use rekey::fleet::{self, IdentitySpec};
use rekey::keys::KeyAlg;

const DEFAULT_PLANS: usize = 500;
const DEFAULT_SEED: u64 = 0x5EED_2026_1128;
const THREADS: usize = 2;
/// Every this many plans, one new certificate is also checked with `openssl verify`.
const OPENSSL_EVERY: usize = 50;
/// How many failing plans the summary shows in full (besides each kind's first), and how many
/// more it lists by index.
const SHOWN: usize = 6;
const KEPT: usize = 200;
const VALIDITY_SECS: i64 = 90 * 86_400;
const ROTATE_STATES: [&str; 3] = ["due", "stalled", "expired"];
/// Stands for the plan's fresh copy of the fleet (and its temporary directory) in plan text.
const COPY: &str = "{COPY}";
const TMP: &str = "{TMP}";

#[test]
fn a_plan_can_only_narrow_what_rekey_would_do() {
    let started = Instant::now();
    let config = Config::from_env();
    let world = World::build();
    let indices: Vec<usize> = match config.only {
        Some(i) => vec![i],
        None => (0..=config.plans).collect(),
    };
    let runs = run_all(&world, &config, &indices);
    let pristine_kept = snapshot(world.pristine.path()) == world.pristine_files;
    let summary = Summary::of(&config, &runs, started.elapsed());
    eprintln!("{}", summary.text);
    assert!(pristine_kept, "the pristine fleet was changed");
    assert!(summary.failed_plans == 0, "{}", summary.text);
}

// ---------------------------------------------------------------------------------------------
// Configuration and the deterministic generator.

struct Config {
    plans: usize,
    seed: u64,
    only: Option<usize>,
}

impl Config {
    fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, text: String| -> u64 {
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={text:?}: {e}"))
        };
        Config {
            plans: var("REKEY_MODEL_PLANS")
                .map_or(DEFAULT_PLANS, |t| number("REKEY_MODEL_PLANS", t) as usize),
            seed: var("REKEY_MODEL_SEED").map_or(DEFAULT_SEED, |t| number("REKEY_MODEL_SEED", t)),
            only: var("REKEY_MODEL_ONLY").map(|t| number("REKEY_MODEL_ONLY", t) as usize),
        }
    }
}

/// splitmix64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    /// The generator of plan `index`: each plan can be replayed alone.
    fn for_plan(seed: u64, index: usize) -> Rng {
        let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "nothing to choose from");
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// The fleets and plans, built once.

struct World {
    pristine: tempfile::TempDir,
    pristine_files: BTreeMap<String, (Vec<u8>, u32)>,
    base: PlanText,
    foreign: PlanText,
    foreign_ca_sha256: String,
    _foreign_dir: tempfile::TempDir,
}

impl World {
    fn build() -> World {
        let pristine = tempfile::tempdir().expect("a temporary directory");
        let (ca, ids) = rekey::cmd::demo::demo_fleet(as_of(), None);
        fleet::write_fleet(pristine.path(), &ca, &ids).expect("the demo fleet is written");
        let base = plan_of(pristine.path(), AS_OF);
        let parse = |text: &str| rekey::plan::Plan::parse(text).expect("the base plan parses");
        assert_eq!(
            parse(&base.render(pristine.path())),
            parse(&plan_text(pristine.path(), AS_OF)),
            "the test's rendering of the plan means what rekey wrote"
        );

        // Another fleet, another CA, dated 40 days earlier, with two names the first lacks.
        let foreign_dir = tempfile::tempdir().expect("a temporary directory");
        let then = as_of() - days(40);
        let (mut ca, mut ids) = rekey::cmd::demo::demo_fleet(then, None);
        ca.common_name = "foreign fleet CA".into();
        ca.alg = KeyAlg::Ed25519;
        for service in ["mocctl", "kms"] {
            ids.push(IdentitySpec::new(
                "node-09",
                service,
                fleet::window(then - days(30), 90),
            ));
        }
        fleet::write_fleet(foreign_dir.path(), &ca, &ids).expect("the foreign fleet is written");
        let foreign = plan_of(foreign_dir.path(), &then.to_rfc3339());
        let foreign_ca_sha256 = foreign.header_value("ca_sha256");
        World {
            pristine_files: snapshot(pristine.path()),
            pristine,
            base,
            foreign,
            foreign_ca_sha256,
            _foreign_dir: foreign_dir,
        }
    }
}

fn plan_text(root: &Path, when: &str) -> String {
    let out = rekey()
        .args(["plan", "--root"])
        .arg(root)
        .args(["--as-of", when])
        .output()
        .expect("rekey plan runs");
    assert!(
        matches!(out.status.code(), Some(0 | 3 | 4)),
        "rekey plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a plan is UTF-8")
}

/// The plan of `root` at `when`, its `root` line pointing at whichever copy it is applied to.
fn plan_of(root: &Path, when: &str) -> PlanText {
    let mut plan = PlanText::parse(&plan_text(root, when));
    plan.set_header("root", &format!("\"{COPY}\""));
    plan
}

// ---------------------------------------------------------------------------------------------
// A plan as header lines, one TOML table per `[[identity]]` block, and what follows them.

#[derive(Clone)]
struct PlanText {
    header: Vec<String>,
    blocks: Vec<toml::Table>,
    tail: String,
}

const IDENTITY: &str = "\n[[identity]]\n";
const ISSUE: &str = "\n[[issue]]\n";
const KINDS: [&str; 2] = ["cert", "token"];

impl PlanText {
    fn parse(text: &str) -> PlanText {
        let (head, rest) = text.split_once(IDENTITY).expect("the plan has identities");
        let (rest, tail) = match rest.split_once(ISSUE) {
            Some((rest, issues)) => (rest, format!("{ISSUE}{issues}")),
            None => (rest, String::new()),
        };
        let blocks = rest
            .split(IDENTITY)
            .map(|b| {
                b.parse()
                    .unwrap_or_else(|e| panic!("identity block {b:?}: {e}"))
            })
            .collect();
        PlanText {
            header: head.lines().map(str::to_string).collect(),
            blocks,
            tail,
        }
    }

    /// The plan's text for the fleet copy at `copy` (whose parent is the plan's own directory).
    fn render(&self, copy: &Path) -> String {
        // The header's count follows the blocks, as a careful hand-edit keeps it: what the
        // model checks is what the entries say (a count that disagrees is refused outright).
        let mut header = self.clone();
        header.set_header("identities", &self.blocks.len().to_string());
        let mut text = header.header.join("\n");
        text.push('\n');
        for block in &self.blocks {
            text.push_str(IDENTITY);
            text.push_str(&render_block(block));
        }
        text.push_str(&self.tail);
        let tmp = copy.parent().expect("the copy is in a directory");
        text.replace(COPY, &copy.to_string_lossy())
            .replace(TMP, &tmp.to_string_lossy())
    }

    fn header_value(&self, key: &str) -> String {
        let prefix = format!("{key} = ");
        let line = self.header.iter().find(|l| l.starts_with(&prefix));
        let value = line.unwrap_or_else(|| panic!("the plan has no {key}"));
        value[prefix.len()..].trim_matches('"').to_string()
    }

    /// Replaces header field `key` with `raw` TOML (added if absent); returns the old raw value.
    fn set_header(&mut self, key: &str, raw: &str) -> String {
        let prefix = format!("{key} = ");
        let line = format!("{prefix}{raw}");
        match self.header.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(l) => std::mem::replace(l, line)[prefix.len()..].to_string(),
            None => {
                self.header.push(line);
                "(absent)".into()
            }
        }
    }

    /// `node/service` of every block, in order.
    fn names(&self) -> Vec<String> {
        self.blocks.iter().map(name_of).collect()
    }

    /// Whether any block of `id` says `rotate` for `kind` (the widest reading of a plan).
    fn says_rotate(&self, id: &str, kind: &str) -> bool {
        self.blocks
            .iter()
            .filter(|b| name_of(b) == id)
            .any(|b| action_of(b, kind).as_deref() == Some("rotate"))
    }

    fn duplicates(&self) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        self.names()
            .into_iter()
            .filter(|n| !seen.insert(n.clone()))
            .collect()
    }
}

fn render_block(block: &toml::Table) -> String {
    let mut text = String::new();
    for key in ["node", "service"] {
        if let Some(v) = block.get(key) {
            text.push_str(&format!("{key} = {v}\n"));
        }
    }
    for (key, value) in block
        .iter()
        .filter(|(k, _)| !["node", "service"].contains(&k.as_str()))
    {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

fn name_of(block: &toml::Table) -> String {
    let s = |k: &str| {
        block
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    format!("{}/{}", s("node"), s("service"))
}

fn action_of(block: &toml::Table, kind: &str) -> Option<String> {
    Some(block.get(kind)?.get("action")?.as_str()?.to_string())
}

// ---------------------------------------------------------------------------------------------
// Mutations: each edits the plan and says what it did, or None when it does not apply.

type Mutation = fn(&mut PlanText, &World, &mut Rng) -> Option<String>;

const MUTATIONS: [Mutation; 9] = [
    duplicate_block,
    drop_block,
    reorder_blocks,
    flip_action,
    edit_date,
    edit_digest,
    edit_reason,
    edit_header,
    insert_foreign,
];

/// The plan `index` applies: the base plan with 1–4 mutations (none for plan 0, the control).
fn mutated(world: &World, seed: u64, index: usize) -> (PlanText, Vec<String>) {
    let mut plan = world.base.clone();
    let mut said = Vec::new();
    if index == 0 {
        return (plan, said);
    }
    let mut rng = Rng::for_plan(seed, index);
    let wanted = 1 + rng.below(4);
    while said.len() < wanted {
        if let Some(what) = rng.pick(&MUTATIONS)(&mut plan, world, &mut rng) {
            said.push(what);
        }
    }
    (plan, said)
}

fn duplicate_block(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    if plan.blocks.is_empty() {
        return None;
    }
    let from = rng.below(plan.blocks.len());
    let to = rng.below(plan.blocks.len() + 1);
    let copy = plan.blocks[from].clone();
    plan.blocks.insert(to, copy);
    Some(format!("duplicate {} at {to}", name_of(&plan.blocks[to])))
}

fn drop_block(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    if plan.blocks.is_empty() {
        return None;
    }
    let at = rng.below(plan.blocks.len());
    Some(format!("drop {}", name_of(&plan.blocks.remove(at))))
}

fn reorder_blocks(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    let n = plan.blocks.len();
    if n < 2 {
        return None;
    }
    if rng.below(4) == 0 {
        plan.blocks.reverse();
        return Some("reverse the blocks".into());
    }
    let (i, j) = (rng.below(n), rng.below(n));
    plan.blocks.swap(i, j);
    Some(format!("swap blocks {i} and {j}"))
}

/// A random credential entry whose action `wanted` accepts: (block index, kind).
fn some_entry(
    plan: &PlanText,
    rng: &mut Rng,
    wanted: fn(&str) -> bool,
) -> Option<(usize, &'static str)> {
    let entries: Vec<(usize, &'static str)> = (0..plan.blocks.len())
        .flat_map(|b| KINDS.map(|k| (b, k)))
        .filter(|(b, k)| action_of(&plan.blocks[*b], k).is_some_and(|a| wanted(&a)))
        .collect();
    (!entries.is_empty()).then(|| *rng.pick(&entries))
}

fn any(_: &str) -> bool {
    true
}

fn entry_mut<'a>(plan: &'a mut PlanText, block: usize, kind: &str) -> &'a mut toml::Table {
    plan.blocks[block][kind]
        .as_table_mut()
        .expect("some_entry picks tables")
}

/// Half the flips widen: an entry that does not say `rotate` is made to say it.
fn flip_action(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    let widen = rng.below(2) == 0;
    let (b, kind) = if widen {
        some_entry(plan, rng, |a| a != "rotate")?
    } else {
        some_entry(plan, rng, any)?
    };
    let name = name_of(&plan.blocks[b]);
    let from = action_of(&plan.blocks[b], kind).unwrap_or_default();
    let others: Vec<&str> = ["keep", "rotate", "recover", "skip"]
        .into_iter()
        .filter(|a| *a != from)
        .collect();
    let to = if widen { "rotate" } else { *rng.pick(&others) };
    entry_mut(plan, b, kind).insert("action".into(), to.into());
    Some(format!("flip {name} {kind} {from}→{to}"))
}

const DATES: [&str; 8] = [
    "2036-11-26T00:00:00Z",
    "2026-11-27T00:00:00Z",
    "2026-11-29T00:00:00Z",
    "2026-11-01T00:00:00Z",
    "2020-02-29T00:00:00Z",
    "2026-11-28",
    "not a date",
    "",
];

fn edit_date(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    let value = *rng.pick(&DATES);
    if rng.below(3) == 0 {
        let raw = if rng.below(4) == 0 {
            "2026-11-28T00:00:00Z".to_string() // a TOML date-time, not a string
        } else {
            format!("{value:?}")
        };
        let old = plan.set_header("as_of", &raw);
        return Some(format!("header as_of {old} → {raw}"));
    }
    let (b, kind) = some_entry(plan, rng, any)?;
    let name = name_of(&plan.blocks[b]);
    let field = *rng.pick(&["not_after", "new_not_after"]);
    entry_mut(plan, b, kind).insert(field.into(), value.into());
    Some(format!("set {name} {kind} {field} = {value:?}"))
}

fn edit_digest(plan: &mut PlanText, world: &World, rng: &mut Rng) -> Option<String> {
    if rng.below(3) == 0 {
        let old = plan.header_value("ca_sha256");
        let new = match rng.below(3) {
            0 => world.foreign_ca_sha256.clone(),
            1 => flip_hex(&old),
            _ => old.to_uppercase(),
        };
        plan.set_header("ca_sha256", &format!("{new:?}"));
        return Some(format!("header ca_sha256 {old:.8}… → {new:.8}…"));
    }
    let (b, kind) = some_entry(plan, rng, any)?;
    let name = name_of(&plan.blocks[b]);
    let entry = entry_mut(plan, b, kind);
    let old = entry
        .get("sha256")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let new = match rng.below(6) {
        0 => {
            entry.remove("sha256");
            return Some(format!("remove {name} {kind} sha256"));
        }
        1 => flip_hex(&old),
        2 => old.to_uppercase(),
        3 => old.chars().skip(1).collect(),
        4 => some_digest(&world.foreign, rng),
        _ => some_digest(&world.base, rng),
    };
    entry.insert("sha256".into(), new.clone().into());
    Some(format!("set {name} {kind} sha256 {old:.8}… → {new:.8}…"))
}

/// The digest with its last hex digit changed (or a made-up one when there was none).
fn flip_hex(digest: &str) -> String {
    let mut chars: Vec<char> = digest.chars().collect();
    match chars.last_mut() {
        Some(c) => *c = if *c == '0' { '1' } else { '0' },
        None => return "0".repeat(64),
    }
    chars.into_iter().collect()
}

fn some_digest(plan: &PlanText, rng: &mut Rng) -> String {
    let digests: Vec<&str> = plan
        .blocks
        .iter()
        .flat_map(|b| KINDS.map(|k| b.get(k).and_then(|e| e.get("sha256"))))
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    rng.pick(&digests).to_string()
}

fn edit_reason(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    let (b, kind) = some_entry(plan, rng, any)?;
    let name = name_of(&plan.blocks[b]);
    let long = "x".repeat(10_000);
    let reasons = [
        "",
        "cannot self-rotate",
        "fresh: issued 2026-11-28T00:00:00Z",
        "approved by ops \"all clear\" \\ ok",
        "ünïcödé ✓\ttab",
        long.as_str(),
    ];
    let reason = *rng.pick(&reasons);
    entry_mut(plan, b, kind).insert("reason".into(), reason.into());
    Some(format!(
        "set {name} {kind} reason = {:?}",
        truncate(reason, 40)
    ))
}

fn edit_header(plan: &mut PlanText, _: &World, rng: &mut Rng) -> Option<String> {
    let (field, values): (&str, &[&str]) = match rng.below(5) {
        0 | 1 => (
            "validity_days",
            &[
                "3650",
                "1",
                "0",
                "89",
                "91",
                "365",
                "4000",
                "-5",
                "4294967296",
                "\"90\"",
            ],
        ),
        2 => ("version", &["0", "2", "\"1\"", "-1"]),
        _ => (
            "root",
            &[
                "\"relative/fleet\"",
                "\"{TMP}/missing-fleet\"",
                "\"{COPY}/\"",
                "\"{COPY}/nodes/..\"",
                "\"\"",
            ],
        ),
    };
    let raw = *rng.pick(values);
    let old = plan.set_header(field, raw);
    Some(format!("header {field} {old} → {raw}"))
}

fn insert_foreign(plan: &mut PlanText, world: &World, rng: &mut Rng) -> Option<String> {
    let block = rng.pick(&world.foreign.blocks).clone();
    let actions: Vec<String> = KINDS
        .iter()
        .filter_map(|k| action_of(&block, k).map(|a| format!("{k} {a}")))
        .collect();
    let at = rng.below(plan.blocks.len() + 1);
    let what = format!(
        "insert foreign {} ({}) at {at}",
        name_of(&block),
        actions.join(", ")
    );
    plan.blocks.insert(at, block);
    Some(what)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}…({} chars)",
            s.chars().take(n).collect::<String>(),
            s.chars().count()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Running plans: two workers, each plan on its own copy of the fleet.

/// One plan's outcome: what was applied, how `apply` exited, what broke.
struct PlanRun {
    index: usize,
    mutations: Vec<String>,
    exit: Option<i32>,
    violations: Vec<(&'static str, String)>,
    changed: usize,
    rolled_back: bool,
    openssl_checked: bool,
}

fn run_all(world: &World, config: &Config, indices: &[usize]) -> Vec<PlanRun> {
    let next = AtomicUsize::new(0);
    let runs = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let mut openssl_owed = false;
                while let Some(&index) = indices.get(next.fetch_add(1, Ordering::Relaxed)) {
                    openssl_owed |= index % OPENSSL_EVERY == 0;
                    let run = run_guarded(world, config.seed, index, openssl_owed);
                    openssl_owed &= !run.openssl_checked;
                    runs.lock().expect("no worker panicked").push(run);
                }
            });
        }
    });
    let mut runs = runs.into_inner().expect("no worker panicked");
    runs.sort_by_key(|r| r.index);
    runs
}

/// Runs one plan; a panic in the test's own code becomes a violation naming the plan.
fn run_guarded(world: &World, seed: u64, index: usize, openssl: bool) -> PlanRun {
    let (plan, mutations) = mutated(world, seed, index);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_plan(world, &plan, index, openssl)
    }));
    let mut run = caught.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        PlanRun {
            index,
            mutations: Vec::new(),
            exit: None,
            violations: vec![("test harness panicked", message)],
            changed: 0,
            rolled_back: false,
            openssl_checked: false,
        }
    });
    run.mutations = mutations;
    run
}

type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Everything known about one applied plan, for the checks.
struct Applied<'a> {
    copy: &'a Path,
    plan: &'a PlanText,
    exit: Option<i32>,
    output: String,
    before: Files,
    after: Files,
    /// `node/service/kind` → state, at the pinned instant, before `apply`.
    judged: BTreeMap<String, String>,
    /// Credentials (`node/service/kind`) whose files changed.
    changed: BTreeSet<String>,
    run_dirs: Vec<std::path::PathBuf>,
}

fn run_plan(world: &World, plan: &PlanText, index: usize, openssl_owed: bool) -> PlanRun {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let copy = tmp.path().join("fleet");
    common::copy(world.pristine.path(), &copy);
    let plan_path = tmp.path().join("plan.toml");
    std::fs::write(&plan_path, plan.render(&copy)).expect("the plan is written");

    let before = snapshot(&copy);
    let judged = states(&copy);
    let apply_args = ["apply", &plan_path.to_string_lossy(), "--as-of", AS_OF];
    let (exit, output) = rekey_in(tmp.path(), &apply_args);
    let after = snapshot(&copy);
    let changed = changed_credentials(&before, &after);
    let applied = Applied {
        copy: &copy,
        plan,
        exit,
        output,
        before,
        after,
        judged,
        changed,
        run_dirs: run_dirs(&copy),
    };

    let mut v = Vec::new();
    check_exit(&applied, &mut v);
    check_files(&applied, &mut v);
    check_whole(&applied, &mut v);
    check_allowed(&applied, &mut v);
    check_duplicates_refused(&applied, &mut v);
    if index == 0 {
        check_control(&applied, &mut v);
    }
    check_coherent(&applied, &mut v);
    let openssl_checked = openssl_owed && check_openssl(&applied, &mut v);
    if copy.join(".rekey/audit.jsonl").exists() {
        v.push(("f audit log written", ".rekey/audit.jsonl appeared".into()));
    }
    let rolled_back = check_rollback(&applied, tmp.path(), &mut v);
    PlanRun {
        index,
        mutations: Vec::new(), // filled in by run_guarded
        exit,
        violations: v,
        changed: applied.changed.len(),
        rolled_back,
        openssl_checked,
    }
}

/// Runs rekey in `dir` (never the crate: a relative root must not land there), 60 s at most;
/// returns the exit code (None if killed) and stdout + stderr.
fn rekey_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = rekey()
        .current_dir(dir)
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("rekey runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `node/service/kind` → state, from `status --format json` at the pinned instant.
fn states(root: &Path) -> BTreeMap<String, String> {
    common::states(root)
        .into_iter()
        .map(|(k, (state, _))| (k, state))
        .collect()
}

/// The credential (`node/service/kind`) a fleet file belongs to, if it is one.
fn credential_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let ["nodes", node, service, file] = parts[..] else {
        return None;
    };
    let kind = match file {
        "cert.pem" | "key.pem" => "cert",
        "token.jwt" => "token",
        _ => return None,
    };
    Some(format!("{node}/{service}/{kind}"))
}

fn changed_paths<'a>(before: &'a Files, after: &'a Files) -> BTreeSet<&'a String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect()
}

fn changed_credentials(before: &Files, after: &Files) -> BTreeSet<String> {
    changed_paths(before, after)
        .into_iter()
        .filter_map(|p| credential_of(p))
        .collect()
}

fn run_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(".rekey/runs")) else {
        return Vec::new();
    };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    dirs
}

// ---------------------------------------------------------------------------------------------
// The checks. Each pushes (kind, detail) for what it finds wrong.

type Violations = Vec<(&'static str, String)>;

/// (a) No panic; a documented exit code.
fn check_exit(a: &Applied, v: &mut Violations) {
    if a.output.contains("panicked at") {
        v.push(("a panic", truncate(&a.output, 300)));
    }
    if !matches!(a.exit, Some(0 | 1 | 3 | 4)) {
        v.push((
            "a bad exit code",
            format!("{:?}: {}", a.exit, truncate(&a.output, 300)),
        ));
    }
}

/// (b) No credential emptied, cut short, lost or re-moded; no temporary file left.
fn check_files(a: &Applied, v: &mut Violations) {
    for (path, (bytes, mode)) in &a.before {
        let Some(file) = common::FILES
            .iter()
            .find(|f| path.ends_with(&format!("/{f}")))
        else {
            continue;
        };
        match a.after.get(path) {
            None => v.push(("b credential damaged", format!("{path} is gone"))),
            Some((now, _)) if now != bytes && now.len() < 100 => v.push((
                "b credential damaged",
                format!("{path} ({file}) is now {} bytes", now.len()),
            )),
            Some((_, now_mode)) if now_mode != mode => v.push((
                "b credential damaged",
                format!("{path} mode {mode:o} → {now_mode:o}"),
            )),
            Some(_) => {}
        }
    }
    let temps = common::temp_files(a.copy);
    if !temps.is_empty() {
        v.push(("b temporary files left", temps.join(", ")));
    }
}

/// (c) Each credential wholly old or wholly new (cert.pem and key.pem together), and the run's
/// report accounts for every change: each file it says it wrote holds what it wrote, and every
/// changed identity is `done` in it.
fn check_whole(a: &Applied, v: &mut Violations) {
    for path in a.before.keys().filter(|p| p.ends_with("/cert.pem")) {
        let key = path.replace("/cert.pem", "/key.pem");
        if !a.before.contains_key(&key) {
            continue;
        }
        let moved = |p: &String| a.before.get(p) != a.after.get(p);
        if moved(path) != moved(&key) {
            v.push((
                "c torn identity",
                format!(
                    "{path} changed: {}, key.pem changed: {}",
                    moved(path),
                    moved(&key)
                ),
            ));
        }
    }
    let done = done_in_reports(&a.run_dirs);
    for (id, files) in &done {
        for (name, new_sha256) in files {
            let path = format!("nodes/{id}/{name}");
            let now = a.after.get(&path).map(|(b, _)| sha256_hex(b));
            if now.as_deref() != Some(new_sha256.as_str()) {
                v.push((
                    "c torn identity",
                    format!("report: {path} was written as {new_sha256:.8}…, it holds {now:.8?}"),
                ));
            }
        }
    }
    for cred in &a.changed {
        let id = cred.rsplit_once('/').map_or(cred.as_str(), |(id, _)| id);
        if !done.contains_key(id) {
            v.push((
                "c torn identity",
                format!("{cred} changed, no report says {id} done"),
            ));
        }
    }
}

/// `node/service` → [(file, new_sha256)] for every identity `done` in the runs' reports.
fn done_in_reports(run_dirs: &[std::path::PathBuf]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut done: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for dir in run_dirs {
        let Some(report) = read_report(dir) else {
            continue;
        };
        let identities = report["identities"].as_array().cloned().unwrap_or_default();
        for i in identities.iter().filter(|i| i["outcome"] == "done") {
            let id = format!("{}/{}", str_of(&i["node"]), str_of(&i["service"]));
            let files = done.entry(id).or_default();
            for f in i["files"].as_array().into_iter().flatten() {
                files.push((str_of(&f["name"]), str_of(&f["new_sha256"])));
            }
        }
    }
    done
}

fn read_report(run_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("report.json")).ok()?;
    let report = serde_json::from_str(&text).ok()?;
    common::assert_report_valid(&report, &run_dir.display().to_string());
    Some(report)
}

fn str_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// (d) Only credentials the fleet judges `rotate` and the plan says `rotate` changed; no other
/// file did.
fn check_allowed(a: &Applied, v: &mut Violations) {
    for cred in &a.changed {
        let state = a.judged.get(cred).map_or("(not in status)", String::as_str);
        let (id, kind) = cred.rsplit_once('/').expect("node/service/kind");
        let planned = a.plan.says_rotate(id, kind);
        let kind_of_wrong = match state {
            "recover" => "d recover identity revived",
            "problem" => "d problem identity rotated",
            "healthy" | "fresh" => "d kept credential rotated",
            s if ROTATE_STATES.contains(&s) && !planned => "d unplanned credential rotated",
            s if ROTATE_STATES.contains(&s) => continue,
            _ => "d unknown credential rotated",
        };
        let says = if planned { "rotate" } else { "no rotate" };
        v.push((
            kind_of_wrong,
            format!("{cred}: judged {state}, plan says {says}"),
        ));
    }
    for path in changed_paths(&a.before, &a.after) {
        if credential_of(path).is_none() {
            v.push(("d other file changed", path.clone()));
        }
    }
}

/// (d) A plan naming an identity twice is refused whole: exit 1, no run, nothing changed.
fn check_duplicates_refused(a: &Applied, v: &mut Violations) {
    let twice = a.plan.duplicates();
    if twice.is_empty() {
        return;
    }
    if a.exit != Some(1) || !a.changed.is_empty() || !a.run_dirs.is_empty() {
        v.push((
            "d duplicate identities accepted",
            format!(
                "{} named twice; exit {:?}, {} runs, {} credentials changed",
                twice.into_iter().collect::<Vec<_>>().join(", "),
                a.exit,
                a.run_dirs.len(),
                a.changed.len()
            ),
        ));
    }
}

/// The unedited plan rotates exactly the credentials the fleet judges `rotate`.
fn check_control(a: &Applied, v: &mut Violations) {
    let due: BTreeSet<String> = a
        .judged
        .iter()
        .filter(|(_, s)| ROTATE_STATES.contains(&s.as_str()))
        .map(|(c, _)| c.clone())
        .collect();
    if due != a.changed || due.is_empty() {
        let missed: Vec<_> = due.difference(&a.changed).collect();
        v.push((
            "control plan not applied as planned",
            format!(
                "{} rotated of {} due; missed {missed:?}",
                a.changed.len(),
                due.len()
            ),
        ));
    }
}

/// (e) Every changed credential is now `fresh` in its identity with no problem, and issued for
/// exactly 90 days from the run date.
fn check_coherent(a: &Applied, v: &mut Violations) {
    if a.changed.is_empty() {
        return;
    }
    let now = states(a.copy);
    let ids: BTreeSet<&str> = a
        .changed
        .iter()
        .filter_map(|c| c.rsplit_once('/'))
        .map(|p| p.0)
        .collect();
    for (cred, state) in &now {
        let id = cred.rsplit_once('/').map_or("", |p| p.0);
        let wrong = if a.changed.contains(cred) {
            state != "fresh"
        } else {
            state == "problem"
        };
        if ids.contains(id) && wrong {
            v.push((
                "e rotated identity incoherent",
                format!("{cred} is now {state}"),
            ));
        }
    }
    for cred in &a.changed {
        let (id, kind) = cred.rsplit_once('/').expect("node/service/kind");
        let file = if kind == "cert" {
            "cert.pem"
        } else {
            "token.jwt"
        };
        let path = format!("nodes/{id}/{file}");
        let Some((bytes, _)) = a.after.get(&path).filter(|(b, _)| b.len() >= 100) else {
            continue; // reported as destroyed
        };
        if a.before.get(&path).is_some_and(|(old, _)| old == bytes) {
            continue; // only its key changed: reported as torn
        }
        match validity(kind, bytes) {
            Ok((from, to)) if from == as_of().timestamp() && to - from == VALIDITY_SECS => {}
            Ok((from, to)) => v.push((
                "e validity not 90 days from the run date",
                format!(
                    "{cred}: {} to {} ({} days)",
                    stamp(from),
                    stamp(to),
                    (to - from) as f64 / 86_400.0
                ),
            )),
            Err(e) => v.push(("e rotated identity incoherent", format!("{cred}: {e}"))),
        }
    }
}

/// (not_before, not_after) of a certificate, or (nbf, exp) of a token, as Unix seconds.
fn validity(kind: &str, bytes: &[u8]) -> Result<(i64, i64), String> {
    if kind == "cert" {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|e| format!("PEM: {e}"))?;
        let cert = pem.parse_x509().map_err(|e| format!("X.509: {e}"))?;
        let window = cert.validity();
        return Ok((window.not_before.timestamp(), window.not_after.timestamp()));
    }
    use base64::Engine as _;
    let text = String::from_utf8_lossy(bytes);
    let payload = text
        .trim()
        .split('.')
        .nth(1)
        .ok_or("token has no payload")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| format!("token payload: {e}"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| format!("token claims: {e}"))?;
    match (claims["nbf"].as_i64(), claims["exp"].as_i64()) {
        (Some(nbf), Some(exp)) => Ok((nbf, exp)),
        _ => Err(format!("token claims lack nbf/exp: {claims}")),
    }
}

fn stamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or(secs.to_string(), |t| t.to_rfc3339())
}

/// (e) `openssl verify` at the run date accepts one new certificate; false if none was new.
fn check_openssl(a: &Applied, v: &mut Violations) -> bool {
    let Some(cert) = a.changed.iter().find(|c| c.ends_with("/cert")) else {
        return false;
    };
    let path = a
        .copy
        .join("nodes")
        .join(cert.trim_end_matches("/cert"))
        .join("cert.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &as_of().timestamp().to_string(),
            "-CAfile",
        ])
        .arg(a.copy.join("ca/ca.crt"))
        .arg(&path)
        .output()
        .expect("openssl is installed (see .ci/run)");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !said.contains(": OK") {
        v.push((
            "e openssl verify refuses a new certificate",
            format!("{cert}: {said}"),
        ));
    }
    true
}

/// (g) Rolling back every run that did something restores every fleet file byte for byte;
/// returns whether a rollback ran.
fn check_rollback(a: &Applied, tmp: &Path, v: &mut Violations) -> bool {
    let worked: Vec<String> = a
        .run_dirs
        .iter()
        .rev()
        .filter(|d| {
            read_report(d).is_some_and(|r| {
                r["identities"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i["outcome"] == "done"))
            })
        })
        .filter_map(|d| Some(d.file_name()?.to_string_lossy().into_owned()))
        .collect();
    for run_id in &worked {
        let root = a.copy.to_string_lossy();
        let (exit, output) = rekey_in(tmp, &["rollback", run_id, "--root", &root]);
        if exit != Some(0) || output.contains("panicked at") {
            v.push((
                "g rollback incomplete",
                format!(
                    "rollback {run_id}: exit {exit:?}: {}",
                    truncate(&output, 300)
                ),
            ));
        }
    }
    if worked.is_empty() {
        return false;
    }
    let restored = snapshot(a.copy);
    let differ: Vec<&String> = changed_paths(&a.before, &restored).into_iter().collect();
    if !differ.is_empty() {
        v.push(("g rollback incomplete", format!("still differ: {differ:?}")));
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The summary.

struct Summary {
    text: String,
    failed_plans: usize,
}

impl Summary {
    fn of(config: &Config, runs: &[PlanRun], took: Duration) -> Summary {
        let failing: Vec<&PlanRun> = runs.iter().filter(|r| !r.violations.is_empty()).collect();
        let mut text = format!(
            "plan model: seed {:#x}, {} plans (plan 0 unedited), {THREADS} threads, {:.1} s\n",
            config.seed,
            runs.len(),
            took.as_secs_f64()
        );
        text += &format!("apply exit codes: {}\n", exit_counts(runs));
        text += &format!(
            "credentials changed: {} in {} plans; rollbacks: {}; openssl checks: {}\n",
            runs.iter().map(|r| r.changed).sum::<usize>(),
            runs.iter().filter(|r| r.changed > 0).count(),
            runs.iter().filter(|r| r.rolled_back).count(),
            runs.iter().filter(|r| r.openssl_checked).count(),
        );
        text += &format!("plans violating an invariant: {}\n", failing.len());
        // Each kind's first plan is shown in full, then the first failing plans up to SHOWN.
        let mut shown = BTreeSet::new();
        for (kind, plans) in by_kind(&failing) {
            let times: usize = plans.iter().map(|(_, n)| n).sum();
            let first = plans[0].0;
            text += &format!(
                "  {kind}: {} plans ({times} times), first plan {first}\n",
                plans.len()
            );
            shown.insert(first);
        }
        shown.extend(failing.iter().map(|r| r.index).take(SHOWN));
        for run in failing.iter().filter(|r| shown.contains(&r.index)) {
            text += &describe(config, run);
        }
        let more: Vec<String> = failing
            .iter()
            .filter(|r| !shown.contains(&r.index))
            .take(KEPT)
            .map(|r| r.index.to_string())
            .collect();
        if !more.is_empty() {
            text += &format!("also failing (plan indices): {}\n", more.join(" "));
        }
        Summary {
            text,
            failed_plans: failing.len(),
        }
    }
}

fn exit_counts(runs: &[PlanRun]) -> String {
    let mut exits: BTreeMap<String, usize> = BTreeMap::new();
    for run in runs {
        *exits
            .entry(run.exit.map_or("killed".into(), |c| c.to_string()))
            .or_default() += 1;
    }
    let exits: Vec<String> = exits.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    exits.join(", ")
}

/// Violation kind → [(plan index, how many times in that plan)], plans in order.
fn by_kind<'a>(failing: &[&PlanRun]) -> BTreeMap<&'a str, Vec<(usize, usize)>> {
    let mut kinds: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for run in failing {
        let distinct: BTreeSet<&'static str> = run.violations.iter().map(|(k, _)| *k).collect();
        for kind in distinct {
            let times = run.violations.iter().filter(|(k, _)| *k == kind).count();
            kinds.entry(kind).or_default().push((run.index, times));
        }
    }
    kinds
}

fn describe(config: &Config, run: &PlanRun) -> String {
    let mut text = format!(
        "plan {} (REKEY_MODEL_SEED={:#x} REKEY_MODEL_ONLY={}), apply exit {:?}, mutations: [{}]\n",
        run.index,
        config.seed,
        run.index,
        run.exit,
        run.mutations.join("; ")
    );
    for (kind, detail) in run.violations.iter().take(8) {
        text += &format!("    {kind}: {}\n", truncate(detail, 400));
    }
    if run.violations.len() > 8 {
        text += &format!("    … and {} more\n", run.violations.len() - 8);
    }
    text
}
