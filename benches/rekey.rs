//! `cargo bench`: rekey against the floors of this machine, measured in the same run.
//!
//! For each scenario it builds a fleet with the library's generator, then times the real `rekey`
//! binary (`status`, `plan`, `rotate`) and, on the same fleet and machine:
//! - the crypto + parse floor: the bare certificate parse and the two signature checks (certificate
//!   and token) per identity, with the CA's key parsed once, on every core, from memory;
//! - the warm read floor: every identity's three files read from the page cache by rekey's own
//!   reader (`rekey::scan::read`: the directory opened without following a link, three bounded
//!   reads, the checks that the three files are of one generation), on every core, nothing parsed.
//!   Reading and checking use the same cores, so the warm rows of `status` and `plan` are judged
//!   against the two floors in turn (target 80%), the fastest a reader that keeps those
//!   guarantees can be on this machine;
//! - the durable-write floor: replacing as many small files as `rotate` replaces with the best
//!   strategy found (temporary files written in parallel, each old file kept by a hard link as
//!   `rotate` keeps its backups, one `syncfs`, renames, one `syncfs`);
//!   for `keys = rotate`, taken in turn with the key-generation floor: a new key pair of the
//!   leaves' type per identity, generated on every core (from a sample of at most
//!   `REKEY_BENCH_RSA` keys), since `rotate` cannot write a key before it has made it;
//! - the signing floor: a new certificate's and a new token's signature per identity with the
//!   CA's key, and the certificate's signature verified as `rotate` checks each one it makes, on
//!   every core, from memory. `rotate` is judged against every floor of what it must do taken in
//!   turn (warm read, crypto + parse, signing, durable-write; target 70%): on two cores its CPU,
//!   not the disk, binds it;
//! - the script an operator would otherwise write: `openssl x509 -req` per certificate plus an
//!   `openssl dgst -sign` per token, on a sample (when `openssl` is installed).
//!
//! Every floor is timed in turn with the rows it bounds: each repetition times the floors once,
//! then runs each command once, so that a change in this shared machine's load weighs on a row
//! and its floors alike; medians of each are reported.
//!
//! Beside `status` (JSON to stdout) it times the other outputs of the read side on the same
//! fleet, each written to a file: `status --format prometheus`, `status --format html` and
//! `plan --format html`, and reports each one's time as a share of `status`'s.
//!
//! On the fleets of the read side (P-256 CA at each size, RSA-2048 CA at the first size) it also
//! times `status` (JSON to stdout) with a cold page cache: before each cold repetition it runs
//! `sync` and writes `3` to `/proc/sys/vm/drop_caches`. Beside it, in the same run and on the same
//! fleet, the cold-read floor: after the same drop, list the nodes, then each node's services,
//! then read every identity's three files (`cert.pem`, `key.pem`, `token.jwt`), all with many
//! reader threads, the listing inside the timed region. Cold `status` is shown against the slower
//! of the cold-read floor and the crypto + parse floor (the row names which one bounds it), and
//! against two bounds of what this machine allows, since reading costs CPU here: the two floors
//! taken in turn, and the most the cores allow (the target: 70% of it): the two floors' CPU time
//! (the cold-read floor's cores busy times its time, plus the crypto floor's) spread over every
//! core with none idle, and never more than either floor alone.
//! Dropping the page cache takes root and a writable `/proc`; without them the cold rows are
//! skipped, and a line under the table and on stderr says why.
//!
//! A growth table follows, derived from the rows already measured (nothing is timed twice): for
//! each P-256 size, warm `status` and `plan`, cold `status` and `rotate` of the whole fleet (keys
//! reused; timed for this table only), in seconds and µs per identity, with the warm commands'
//! and rotate's peak RSS, and a line giving the peak RSS at the largest size relative to the
//! smallest.
//!
//! Sizes for `status` and `plan`: `REKEY_BENCH_SIZES` (default `10000,100000`); size for
//! `rotate`: `REKEY_BENCH_ROTATE` (default 20000, as docs/design.md §7 states the target); repetitions:
//! `REKEY_BENCH_REPS` (default 3, cold repetitions included; medians are reported); RSA key
//! generation sample: `REKEY_BENCH_RSA` (default 200); reader threads of the cold-read floor:
//! `REKEY_BENCH_READERS` (default 64); `REKEY_BENCH_GROWTH_MILLION=1` (default 0) adds a P-256
//! fleet of 1,000,000 identities to the growth table, timing only warm `status` and `plan` (JSON),
//! cold `status` and `rotate` on it (building it is slow, and takes some 16 GB of disk and 4 million
//! inodes on ext4). Fleets live in a temporary directory (`TMPDIR`), every copy kept until the end
//! (some 20 GB with the defaults; see `quiet_inodes`).
//!
//! Fleets are dated from a pinned instant and every command runs with `--as-of` it, so the same
//! fleets are measured whatever the date (the operator script's `openssl x509 -req -days 90`
//! dates its certificates from the clock, but nothing judges them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use rekey::fleet;
use rekey::keys::KeyAlg;
use x509_parser::prelude::{FromDer, X509Certificate};

const BIN: &str = env!("CARGO_BIN_EXE_rekey");

/// The instant fleets are dated from and judged at (`--as-of`), never the clock.
const AS_OF: &str = "2026-11-28T00:00:00Z";

fn as_of() -> DateTime<Utc> {
    AS_OF.parse().expect("AS_OF is RFC 3339")
}

struct Row {
    scenario: String,
    command: String,
    identities: usize,
    median: Duration,
    floor_per_s: Option<f64>,
    /// Which floor `floor_per_s` is, when the row is judged against the slower of two.
    floor_name: Option<&'static str>,
    /// The warm read floor of the fleet, on the warm rows of the read side.
    warm_read_per_s: Option<f64>,
    /// The cold-read floor of the fleet, on the cold rows, and the cores it kept busy (the
    /// process's CPU time over its wall time: near the machine's cores, reading is CPU-bound
    /// here, and the two floors add instead of overlapping).
    cold_read_per_s: Option<f64>,
    cold_read_cores: Option<f64>,
    openssl_per_s: Option<f64>,
    /// For `rotate`: every floor of what it must do on the same cores, taken in turn (reading,
    /// checking, signing, writing durably, and for new keys generating them).
    all_in_turn_per_s: Option<f64>,
    peak_rss_kib: Option<u64>,
}

/// The cold-cache runs: how many threads read for the cold-read floor, and why the cold rows are
/// skipped once the page cache could not be dropped.
struct Cold {
    readers: usize,
    skipped: Option<String>,
}

impl Cold {
    fn skip(&mut self, why: String) {
        let line = format!("cold-cache rows skipped: cannot drop the page cache: {why}");
        eprintln!("{line}");
        self.skipped = Some(line);
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs the rekey binary; returns its wall time and peak RSS in KiB. The peak is read by GNU
/// `time` (package `time`), a small parent: a child forked straight from this harness would
/// count the harness's own memory in its high-water mark. Without `time`, the peak is unknown.
fn run_rekey(args: &[&str]) -> (Duration, Option<u64>) {
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut command = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.args(["-f", "%M", "-o"]).arg(rss_file.path()).arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    let start = Instant::now();
    let status = command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("rekey starts");
    let elapsed = start.elapsed();
    assert!(
        matches!(status.code(), Some(0 | 3 | 4)),
        "rekey {args:?} exited {:?}",
        status.code()
    );
    let rss = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|t| t.trim().lines().last()?.trim().parse().ok());
    (elapsed, rss)
}

fn build_fleet(root: &Path, n: usize, ca_alg: KeyAlg, leaf: KeyAlg) {
    let (ca, ids) = rekey::catalog::uniform(as_of(), n, ca_alg, leaf);
    std::fs::create_dir_all(root).unwrap();
    fleet::write_fleet(root, &ca, &ids).expect("the bench fleet is written");
}

/// Copies `from` to `to`, a name not yet used: nothing is removed here, since removing a tree
/// just before a timed write would slow that write (see [`quiet_inodes`]).
fn copy_tree(from: &Path, to: &Path) {
    assert!(!to.exists(), "{} is a fresh name", to.display());
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a failed");
    // Flush the copy now, so that no measured sync pays for it.
    sync_fs(to);
}

/// A fleet too large for its copies to be kept beside the others' (the million): each is
/// removed once timed, and the next timed write waits (see [`quiet_inodes`]).
const LARGE: usize = 500_000;

/// When the bench last removed a tree of files.
static REMOVED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// Removes a tree the bench made (if it is there), noting when.
fn remove_tree(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok() {
        let _ = std::fs::remove_dir_all(path);
        sync_fs(path.parent().unwrap_or(Path::new("/")));
        *REMOVED.lock().unwrap() = Some(Instant::now());
    }
}

/// Waits, before a timed run that creates files, until the last removal is six minutes old.
/// ext4 without a journal (this class of machine's filesystem) skips, when it allocates an
/// inode, each free one deleted in the last minute, or the last six while its inode table block
/// is dirty (`recently_deleted` in a profile): right after a fleet's copy was removed, creating
/// files cost `rotate` and the durable-write floor several times their usual system time, and
/// not alike (`rotate` creates more inodes per identity: its backup directories). So the bench
/// removes nothing before the end but the copies of a fleet of a million ([`LARGE`]), and
/// neither `rotate` nor the floor deletes a file (each keeps the old ones). A fleet on a
/// cluster's volume is not rotated minutes after tens of thousands of its files were removed.
fn quiet_inodes() {
    const QUIET: Duration = Duration::from_secs(365);
    let removed = *REMOVED.lock().unwrap();
    if let Some(left) = removed.and_then(|at| QUIET.checked_sub(at.elapsed())) {
        eprintln!(
            "bench: waiting {}s for the inodes removed to age (ext4 skips recently deleted ones)",
            left.as_secs()
        );
        std::thread::sleep(left);
    }
}

fn identity_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for node in std::fs::read_dir(root.join("nodes")).unwrap() {
        for service in std::fs::read_dir(node.unwrap().path()).unwrap() {
            dirs.push(service.unwrap().path());
        }
    }
    dirs.sort();
    dirs
}

/// Identities per second of `n` identities handled in each of `times` (their median).
fn rate(n: usize, times: Vec<Duration>) -> f64 {
    n as f64 / median(times).as_secs_f64()
}

/// The crypto + parse floor: parse each certificate and verify it and its token, on all cores,
/// from memory. Each [`CryptoFloor::once`] is one timed pass, so that its repetitions can take
/// turns with the rows it bounds.
struct CryptoFloor {
    key: aws_lc_rs::signature::ParsedPublicKey,
    ca: rekey::ca::Ca,
    validation: jsonwebtoken::Validation,
    inputs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CryptoFloor {
    fn new(root: &Path) -> CryptoFloor {
        let ca_pem = std::fs::read(root.join("ca/ca.crt")).unwrap();
        let ca = rekey::ca::from_pem(&ca_pem, None).unwrap();
        let key = ca_verifier(root);
        let inputs = identity_dirs(root)
            .iter()
            .map(|d| {
                (
                    std::fs::read(d.join("cert.pem")).unwrap(),
                    std::fs::read(d.join("token.jwt")).unwrap(),
                )
            })
            .collect();
        let mut validation = jsonwebtoken::Validation::new(ca.jwt_alg);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        CryptoFloor {
            key,
            ca,
            validation,
            inputs,
        }
    }

    fn once(&self) -> Duration {
        let start = Instant::now();
        let ok = self
            .inputs
            .par_iter()
            .filter(|(cert, token)| {
                let der = x509_parser::pem::parse_x509_pem(cert).unwrap().1.contents;
                let (_, c) = X509Certificate::from_der(&der).unwrap();
                let text = std::str::from_utf8(token).unwrap().trim_end();
                self.key
                    .verify_sig(c.tbs_certificate.as_ref(), &c.signature_value.data)
                    .is_ok()
                    && jsonwebtoken::decode::<serde_json::Value>(
                        text,
                        self.ca.decoding_key(),
                        &self.validation,
                    )
                    .is_ok()
            })
            .count();
        assert_eq!(ok, self.inputs.len());
        start.elapsed()
    }
}

/// The bench CA's public key parsed once for verifying, as the best checker would (and as rekey
/// does).
fn ca_verifier(root: &Path) -> aws_lc_rs::signature::ParsedPublicKey {
    let ca_pem = std::fs::read(root.join("ca/ca.crt")).unwrap();
    let ca_der = rekey::pemblock::single(&ca_pem).unwrap().der;
    let (_, cert) = X509Certificate::from_der(&ca_der).unwrap();
    let ca = rekey::ca::from_pem(&ca_pem, None).unwrap();
    let params: &dyn aws_lc_rs::signature::VerificationAlgorithm = match ca.public.alg {
        KeyAlg::Rsa { .. } => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        _ => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
    };
    aws_lc_rs::signature::ParsedPublicKey::new(params, &cert.public_key().subject_public_key.data)
        .expect("the bench CA's key parses")
}

/// The warm read floor: every identity's files read by rekey's own reader, with its guarantees
/// (no link followed, the size cap, the one-generation checks), from the page cache, on all
/// cores, nothing parsed. The fleet is listed outside the timed region.
struct WarmReadFloor {
    candidates: Vec<rekey::scan::Candidate>,
}

impl WarmReadFloor {
    fn new(root: &Path) -> WarmReadFloor {
        let listed = rekey::scan::nodes(root).expect("the bench fleet lists");
        let candidates: Vec<rekey::scan::Candidate> = listed
            .nodes
            .iter()
            .flat_map(|node| rekey::scan::services(root, node).candidates)
            .collect();
        // Once untimed, so the page cache holds every file whatever ran before.
        candidates
            .par_iter()
            .for_each(|c| drop(rekey::scan::read(c)));
        WarmReadFloor { candidates }
    }

    fn once(&self) -> Duration {
        let start = Instant::now();
        let read = self
            .candidates
            .par_iter()
            .filter(|c| {
                let files = rekey::scan::read(c);
                files.in_flight.is_none()
                    && [&files.cert, &files.key, &files.token]
                        .iter()
                        .all(|slot| matches!(slot, rekey::fsio::Slot::Present(_)))
            })
            .count();
        assert_eq!(read, self.candidates.len());
        start.elapsed()
    }
}

/// The signing floor: a new certificate's and a new token's signature per identity with the
/// CA's key (what `rotate` signs), and the certificate's signature verified (as `rotate` checks
/// each certificate it made before writing it: a faulty signature is never written), on all
/// cores, from memory; the messages are each identity's own certificate body and token, read
/// outside the timed region.
struct SignFloor {
    key: rcgen::KeyPair,
    verifier: aws_lc_rs::signature::ParsedPublicKey,
    messages: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SignFloor {
    fn new(root: &Path) -> SignFloor {
        let pem = std::fs::read_to_string(root.join("ca/ca.key")).unwrap();
        let key = rcgen::KeyPair::from_pem(&pem).expect("the bench CA's key parses");
        let messages = identity_dirs(root)
            .iter()
            .map(|d| {
                let cert = std::fs::read(d.join("cert.pem")).unwrap();
                let der = x509_parser::pem::parse_x509_pem(&cert).unwrap().1.contents;
                let (_, c) = X509Certificate::from_der(&der).unwrap();
                let tbs = c.tbs_certificate.as_ref().to_vec();
                let token = std::fs::read(d.join("token.jwt")).unwrap();
                let signed = token.rsplitn(2, |b| *b == b'.').nth(1).unwrap_or(&token);
                (tbs, signed.to_vec())
            })
            .collect();
        SignFloor {
            key,
            verifier: ca_verifier(root),
            messages,
        }
    }

    fn once(&self) -> Duration {
        use rcgen::SigningKey;
        let start = Instant::now();
        self.messages.par_iter().for_each(|(tbs, token)| {
            let signature = self.key.sign(tbs).expect("signs");
            assert!(self.verifier.verify_sig(tbs, &signature).is_ok());
            std::hint::black_box(self.key.sign(token).expect("signs"));
        });
        start.elapsed()
    }
}

/// One pass of the durable-write floor: replace `files_per_identity` small files per identity
/// of a fresh copy of the fleet with the best strategy found (the copy untimed), each old file
/// kept by a hard link beside it, as `rotate` keeps its backups.
fn write_floor_once(root: &Path, scratch: &Path, files_per_identity: usize) -> Duration {
    let names = ["cert.pem", "token.jwt", "key.pem"];
    copy_tree(root, scratch);
    let dirs = identity_dirs(scratch);
    quiet_inodes();
    let start = Instant::now();
    dirs.par_iter().for_each(|d| {
        for name in &names[..files_per_identity] {
            std::fs::write(d.join(format!(".tmp.{name}")), [b'x'; 700]).unwrap();
            // The old file kept, as `rotate` keeps its backups: nothing is deleted.
            std::fs::hard_link(d.join(name), d.join(format!(".old.{name}"))).unwrap();
        }
    });
    sync_fs(scratch);
    dirs.par_iter().for_each(|d| {
        for name in &names[..files_per_identity] {
            std::fs::rename(d.join(format!(".tmp.{name}")), d.join(name)).unwrap();
        }
    });
    sync_fs(scratch);
    start.elapsed()
}

/// `REKEY_BENCH_RSA` (default 200): the RSA-leaf scenario's identities (0: none), and the most
/// key pairs the key-generation floor makes, enough for a steady rate, few enough for RSA.
fn rsa_sample() -> usize {
    env_or("REKEY_BENCH_RSA", "200")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("REKEY_BENCH_RSA: a number"))
}

/// One pass of the key-generation floor: `sample` new key pairs of `alg`, generated on every
/// core as `rotate` does with `keys = rotate`.
fn keygen_floor_once(alg: KeyAlg, sample: usize) -> Duration {
    let start = Instant::now();
    (0..sample).into_par_iter().for_each(|_| {
        let key = match alg {
            KeyAlg::Rsa { .. } => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyAlg::P256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlg::P384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlg::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        };
        std::hint::black_box(key.expect("a key pair is generated"));
    });
    start.elapsed()
}

fn sync_fs(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: valid descriptor for the duration of the call.
    assert_eq!(
        unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) },
        0
    );
}

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Flushes dirty pages (`sync`), then drops the page cache, dentries and inodes, so that the next
/// read comes from the disk. Fails without root or with a read-only `/proc`.
fn drop_caches() -> Result<(), String> {
    // SAFETY: sync(2) takes no argument and always succeeds.
    unsafe { libc::sync() };
    std::fs::OpenOptions::new()
        .write(true)
        .open(DROP_CACHES)
        .and_then(|mut f| f.write_all(b"3"))
        .map_err(|e| format!("writing 3 to {DROP_CACHES}: {e}"))
}

/// One repetition of the cold-read floor: drop the page cache, then, timed, list the nodes, list
/// each node's services in parallel, and read every identity's three files with `readers`
/// threads taking the sorted identity directories by an atomic index. Returns the time and the
/// number of identities read.
fn cold_read(root: &Path, readers: usize) -> Result<(Duration, usize, f64), String> {
    drop_caches()?;
    let cpu = cpu_time();
    let start = Instant::now();
    let nodes: Vec<PathBuf> = std::fs::read_dir(root.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let next = AtomicUsize::new(0);
    let mut dirs: Vec<PathBuf> = std::thread::scope(|s| {
        let listers: Vec<_> = (0..readers.min(nodes.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(node) = nodes.get(next.fetch_add(1, Ordering::Relaxed)) {
                        for service in std::fs::read_dir(node).unwrap() {
                            mine.push(service.unwrap().path());
                        }
                    }
                    mine
                })
            })
            .collect();
        listers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    dirs.sort();
    let next = AtomicUsize::new(0);
    let bytes: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..readers.min(dirs.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut bytes = 0;
                    while let Some(d) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        for name in ["cert.pem", "key.pem", "token.jwt"] {
                            bytes += std::fs::read(d.join(name)).unwrap().len();
                        }
                    }
                    bytes
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let elapsed = start.elapsed();
    let busy = (cpu_time() - cpu).as_secs_f64() / elapsed.as_secs_f64();
    assert!(bytes > 0, "the cold read read nothing");
    Ok((elapsed, dirs.len(), busy))
}

/// The CPU time (user and system) this process has used so far.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage buffer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Cold `status` (JSON to stdout) on the fleet, round-robin with the cold-read floor: each
/// repetition drops the page cache before the floor and again before `status`. The row is judged
/// against the slower of the cold-read floor and the crypto + parse floor (`crypto`, identities/s).
#[expect(
    clippy::too_many_arguments,
    reason = "the scenario's state, passed down as is"
)]
fn cold_status(
    rows: &mut Vec<Row>,
    cold: &mut Cold,
    name: &str,
    n: usize,
    root: &Path,
    root_s: &str,
    crypto: f64,
    reps: usize,
) {
    let args = [
        "status", "--root", root_s, "--as-of", AS_OF, "--format", "json",
    ];
    let mut reads = Vec::new();
    let mut cores = Vec::new();
    let mut times = Vec::new();
    let mut peak: Option<u64> = None;
    for rep in 0..reps {
        eprintln!(
            "bench: {name}: cold-read floor, {} readers ({}/{reps})",
            cold.readers,
            rep + 1
        );
        match cold_read(root, cold.readers) {
            Ok((t, read, busy)) => {
                assert_eq!(read, n, "the cold read found every identity");
                reads.push(t);
                cores.push(busy);
            }
            Err(why) => return cold.skip(why),
        }
        eprintln!("bench: {name}: status, cold cache ({}/{reps})", rep + 1);
        if let Err(why) = drop_caches() {
            return cold.skip(why);
        }
        let (t, rss) = run_rekey(&args);
        times.push(t);
        peak = peak.max(rss);
    }
    let read = n as f64 / median(reads).as_secs_f64();
    let (floor, floor_name) = if read < crypto {
        (read, "cold read")
    } else {
        (crypto, "crypto + parse")
    };
    rows.push(Row {
        scenario: name.into(),
        command: "status, cold cache".into(),
        identities: n,
        median: median(times),
        floor_per_s: Some(floor),
        floor_name: Some(floor_name),
        cold_read_per_s: Some(read),
        warm_read_per_s: None,
        cold_read_cores: Some(median_f64(cores)),
        openssl_per_s: None,
        all_in_turn_per_s: None,
        peak_rss_kib: peak,
    });
}

/// What an operator would script: one `openssl x509 -req` per certificate and one signature per
/// token, on `sample` identities. Returns identities per second, or None without openssl.
fn openssl_script(root: &Path, scratch: &Path, sample: usize) -> Option<f64> {
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    std::fs::create_dir_all(scratch).unwrap();
    let dirs: Vec<_> = identity_dirs(root).into_iter().take(sample).collect();
    let mut script = String::from("set -e\n");
    for (i, d) in dirs.iter().enumerate() {
        let d = d.display();
        let ca = root.join("ca");
        let ca = ca.display();
        let s = scratch.display();
        script.push_str(&format!(
            "openssl x509 -x509toreq -in {d}/cert.pem -signkey {d}/key.pem -out {s}/{i}.csr 2>/dev/null\n\
             openssl x509 -req -in {s}/{i}.csr -CA {ca}/ca.crt -CAkey {ca}/ca.key -days 90 -set_serial 0x{i:x}1234 -copy_extensions copy -out {s}/{i}.pem 2>/dev/null\n\
             printf 'header.payload' | openssl dgst -sha256 -sign {ca}/ca.key -out {s}/{i}.sig\n"
        ));
    }
    let start = Instant::now();
    let ok = Command::new("bash")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap()
        .success();
    let elapsed = start.elapsed();
    assert!(ok, "the openssl script failed");
    Some(dirs.len() as f64 / elapsed.as_secs_f64())
}

/// `rotate` (with `keys`) of a fresh copy of the fleet at `root`, made at `copy`; its time and
/// peak RSS.
fn rotate_copy(root: &Path, copy: &Path, keys: &str) -> (Duration, Option<u64>) {
    copy_tree(root, copy);
    std::fs::write(
        copy.join("rekey.toml"),
        format!("version = 1\nkeys = \"{keys}\"\n"),
    )
    .unwrap();
    let args = [
        "rotate",
        "--root",
        copy.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--progress",
        "never",
        "--format",
        "json",
    ];
    quiet_inodes();
    run_rekey(&args)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per scenario, read as a table"
)]
fn scenario(
    rows: &mut Vec<Row>,
    work: &Path,
    name: &str,
    n: usize,
    (ca_alg, leaf): (KeyAlg, KeyAlg),
    reps: usize,
    read_commands: &[(&str, &str, bool)],
    rotate_modes: &[&str],
    cold: Option<&mut Cold>,
    growth_rotate: bool,
) {
    eprintln!("bench: {name}: building {n} identities");
    let work = &work.join(name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    std::fs::create_dir_all(work).unwrap();
    let root = work.join("fleet");
    build_fleet(&root, n, ca_alg, leaf);
    sync_fs(&root);
    let root_s = root.to_str().unwrap().to_string();
    if !read_commands.is_empty() {
        eprintln!("bench: {name}: loading the crypto + parse floor's inputs");
        let crypto_floor = CryptoFloor::new(&root);
        let warm_floor = WarmReadFloor::new(&root);
        let out = work.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let commands: Vec<(String, Vec<String>)> = read_commands
            .iter()
            .map(|&(command, format, to_file)| {
                let mut args = vec![
                    command, "--root", &root_s, "--as-of", AS_OF, "--format", format,
                ];
                let file = out.join(format!("{command}.{format}"));
                let label = if to_file {
                    args.extend(["-o", file.to_str().unwrap()]);
                    format!("{command} --format {format}")
                } else {
                    command.to_string()
                };
                (label, args.iter().map(|a| a.to_string()).collect())
            })
            .collect();
        // Round-robin: each repetition times both floors and runs every command once, so that a
        // change in the machine's load weighs on the rows and the floors that bound them alike
        // and their ratios stay readable.
        let mut times = vec![Vec::new(); commands.len()];
        let mut peaks = vec![None; commands.len()];
        let (mut crypto_times, mut warm_times) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            eprintln!(
                "bench: {name}: crypto + parse floor, warm read floor ({}/{reps})",
                rep + 1
            );
            crypto_times.push(crypto_floor.once());
            warm_times.push(warm_floor.once());
            for (at, (label, args)) in commands.iter().enumerate() {
                eprintln!("bench: {name}: {label} ({}/{reps})", rep + 1);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (t, rss) = run_rekey(&args);
                times[at].push(t);
                peaks[at] = peaks[at].max(rss);
            }
        }
        drop(crypto_floor);
        let (crypto, warm_read) = (rate(n, crypto_times), rate(n, warm_times));
        for (((label, _), t), rss) in commands.into_iter().zip(times).zip(peaks) {
            rows.push(Row {
                scenario: name.into(),
                command: label,
                identities: n,
                median: median(t),
                floor_per_s: Some(crypto),
                floor_name: None,
                cold_read_per_s: None,
                warm_read_per_s: Some(warm_read),
                cold_read_cores: None,
                openssl_per_s: None,
                all_in_turn_per_s: None,
                peak_rss_kib: rss,
            });
        }
        if let Some(cold) = cold.filter(|c| c.skipped.is_none()) {
            cold_status(rows, cold, name, n, &root, &root_s, crypto, reps);
        }
    }
    if growth_rotate {
        growth_rotate_row(rows, work, name, n, &root, reps);
    }
    let openssl = if rotate_modes.is_empty() {
        None
    } else {
        openssl_script(&root, &work.join("openssl"), 40)
    };
    for keys in rotate_modes {
        let files = if *keys == "rotate" { 3 } else { 2 };
        let keygen_sample = (*keys == "rotate").then(|| n.min(rsa_sample().max(1)));
        // Each repetition times the floors, then rotate, on the same load.
        let (mut writes, mut keygens, mut times) = (Vec::new(), Vec::new(), Vec::new());
        let (mut reads, mut checks, mut signs) = (Vec::new(), Vec::new(), Vec::new());
        let mut rss = None;
        let (read_floor, check_floor, sign_floor) = (
            WarmReadFloor::new(&root),
            CryptoFloor::new(&root),
            SignFloor::new(&root),
        );
        for rep in 0..reps {
            eprintln!(
                "bench: {name}: warm read, crypto + parse and signing floors ({}/{reps})",
                rep + 1
            );
            reads.push(read_floor.once());
            checks.push(check_floor.once());
            signs.push(sign_floor.once());
            eprintln!(
                "bench: {name}: durable-write floor ({files} files per identity) ({}/{reps})",
                rep + 1
            );
            let scratch = work.join(format!("floor-{keys}-{rep}"));
            writes.push(write_floor_once(&root, &scratch, files));
            if let Some(sample) = keygen_sample {
                eprintln!(
                    "bench: {name}: key-generation floor ({leaf}) ({}/{reps})",
                    rep + 1
                );
                keygens.push(keygen_floor_once(leaf, sample));
            }
            eprintln!("bench: {name}: rotate (keys = {keys}) ({}/{reps})", rep + 1);
            let copy = work.join(format!("rotate-{keys}-{rep}"));
            let (t, peak) = rotate_copy(&root, &copy, keys);
            times.push(t);
            rss = rss.max(peak);
        }
        let t = median(times);
        let write = rate(n, writes);
        let (floor, floor_name) = match keygen_sample {
            Some(sample) => (
                in_turn(write, rate(sample, keygens)),
                Some("write + key generation in turn"),
            ),
            None => (write, None),
        };
        let all_in_turn = [reads, checks, signs]
            .into_iter()
            .map(|times| rate(n, times))
            .fold(floor, in_turn);
        rows.push(Row {
            scenario: name.into(),
            command: format!("rotate, keys = {keys}"),
            identities: n,
            median: t,
            floor_per_s: Some(floor),
            floor_name,
            cold_read_per_s: None,
            warm_read_per_s: None,
            cold_read_cores: None,
            openssl_per_s: openssl,
            all_in_turn_per_s: Some(all_in_turn),
            peak_rss_kib: rss,
        });
    }
    // Kept until the bench ends (see `quiet_inodes`), but for a fleet too large for the disk
    // to hold its copies beside the others'.
    if n >= LARGE {
        remove_tree(work);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and test listers: nothing to run here
    }
    let number = |name: &str, default: &str| -> usize {
        env_or(name, default)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: a number"))
    };
    let sizes: Vec<usize> = env_or("REKEY_BENCH_SIZES", "10000,100000")
        .split(',')
        .map(|s| s.trim().parse().expect("REKEY_BENCH_SIZES: numbers"))
        .collect();
    let reps = number("REKEY_BENCH_REPS", "3");
    let rotate_n = number("REKEY_BENCH_ROTATE", "20000");
    let rsa_sample = rsa_sample();
    let mut cold = Cold {
        readers: number("REKEY_BENCH_READERS", "64").max(1),
        skipped: None,
    };
    let million = number("REKEY_BENCH_GROWTH_MILLION", "0") > 0;
    rekey::token::install_provider();
    let work = tempfile::Builder::new()
        .prefix("rekey-bench-")
        .tempdir()
        .unwrap();
    let mut rows = Vec::new();
    let (p256, rsa) = (KeyAlg::P256, KeyAlg::Rsa { bits: 2048 });
    let read = &[
        ("status", "json", false),
        ("status", "prometheus", true),
        ("status", "html", true),
        ("plan", "json", false),
        ("plan", "html", true),
    ][..];
    let mut growth_sizes = sizes.clone();
    for &n in &sizes {
        scenario(
            &mut rows,
            work.path(),
            &format!("P-256 CA, {n}"),
            n,
            (p256, p256),
            reps,
            read,
            &[],
            Some(&mut cold),
            true,
        );
    }
    const MILLION: usize = 1_000_000;
    if million && !sizes.contains(&MILLION) {
        // Only what the growth table shows: the other outputs would add minutes each.
        let lean = &[("status", "json", false), ("plan", "json", false)][..];
        scenario(
            &mut rows,
            work.path(),
            &format!("P-256 CA, {MILLION}"),
            MILLION,
            (p256, p256),
            reps,
            lean,
            &[],
            Some(&mut cold),
            true,
        );
        growth_sizes.push(MILLION);
    }
    let n = sizes[0];
    scenario(
        &mut rows,
        work.path(),
        &format!("RSA-2048 CA, {n}"),
        n,
        (rsa, p256),
        reps,
        read,
        &[],
        Some(&mut cold),
        false,
    );
    if rotate_n > 0 {
        let modes = &["reuse", "rotate"][..];
        scenario(
            &mut rows,
            work.path(),
            &format!("P-256 CA, {rotate_n}"),
            rotate_n,
            (p256, p256),
            reps,
            &[],
            modes,
            None,
            false,
        );
        let name = format!("RSA-2048 CA, {rotate_n}");
        scenario(
            &mut rows,
            work.path(),
            &name,
            rotate_n,
            (rsa, p256),
            reps,
            &[],
            &["reuse"],
            None,
            false,
        );
    }
    if rsa_sample > 0 {
        let name = format!("RSA-2048 leaves, {rsa_sample}");
        scenario(
            &mut rows,
            work.path(),
            &name,
            rsa_sample,
            (p256, rsa),
            1,
            &[],
            &["rotate"],
            None,
            false,
        );
    }
    print_table(&rows);
    if let Some(line) = &cold.skipped {
        println!();
        println!("{line}");
    }
    print_outputs(&rows);
    print_warm(&rows);
    print_cold(&rows);
    print_rotate(&rows);
    print_growth(&rows, &growth_sizes);
}

/// A blank line, then a Markdown table's header and its alignment row.
fn heading(columns: &str, alignment: &str) {
    println!();
    println!("{columns}");
    println!("{alignment}");
}

/// Identities per second of two stages run one after the other on the same cores, from each
/// stage's own rate: what reading then checking allows when reading costs CPU too.
fn in_turn(read: f64, crypto: f64) -> f64 {
    1.0 / (1.0 / read + 1.0 / crypto)
}

/// The two floors of each warm `status` and `plan` row (JSON to stdout), and how the row compares
/// with them taken in turn: reading costs CPU on the cores that check, so the two add.
fn print_warm(rows: &[Row]) {
    let warm: Vec<&Row> = rows
        .iter()
        .filter(|r| r.warm_read_per_s.is_some() && matches!(r.command.as_str(), "status" | "plan"))
        .collect();
    if warm.is_empty() {
        return;
    }
    heading(
        "| scenario | command | identities | warm read floor identities/s | crypto + parse floor identities/s | both floors in turn identities/s | rekey identities/s | vs crypto + parse floor | vs both in turn (target 80%) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    );
    for r in warm {
        let rate = r.identities as f64 / r.median.as_secs_f64();
        let in_turn = r
            .warm_read_per_s
            .zip(r.floor_per_s)
            .map(|(read, crypto)| in_turn(read, crypto));
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            r.scenario,
            r.command,
            r.identities,
            r.warm_read_per_s.map_or("-".into(), |f| format!("{f:.0}")),
            r.floor_per_s.map_or("-".into(), |f| format!("{f:.0}")),
            in_turn.map_or("-".into(), |f| format!("{f:.0}")),
            rate,
            r.floor_per_s
                .map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
            in_turn.map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
        );
    }
}

/// The two floors of each cold `status` row, and which one bounds it.
fn print_cold(rows: &[Row]) {
    let cold: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cold_read_per_s.is_some())
        .collect();
    if cold.is_empty() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    heading(
        &format!(
            "| scenario | identities | cold-read floor identities/s | cores busy reading | crypto + parse floor identities/s | bound by | status cold identities/s | vs bound | both floors in turn identities/s | vs both in turn | most the {cores} cores allow identities/s | vs that (target 70%) |"
        ),
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    );
    for r in cold {
        let crypto = rows
            .iter()
            .find(|s| s.scenario == r.scenario && s.command == "status")
            .and_then(|s| s.floor_per_s);
        let rate = r.identities as f64 / r.median.as_secs_f64();
        // Reading and checking one after the other: what a cold run costs when reading itself
        // keeps the cores busy, so that nothing is left to overlap.
        let in_turn = r
            .cold_read_per_s
            .zip(crypto)
            .map(|(read, crypto)| in_turn(read, crypto));
        // The most this machine allows: neither floor alone, nor more than the cores can do when
        // reading costs the CPU time the cold-read floor spent per identity and checking the
        // crypto floor's, with no core ever idle (reading perfectly overlapped with checking).
        let cpu_bound =
            r.cold_read_per_s
                .zip(r.cold_read_cores)
                .zip(crypto)
                .map(|((read, busy), crypto)| {
                    (cores / (busy / read + cores / crypto))
                        .min(read)
                        .min(crypto)
                });
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.identities,
            r.cold_read_per_s.map_or("-".into(), |f| format!("{f:.0}")),
            r.cold_read_cores.map_or("-".into(), |c| format!("{c:.2}")),
            crypto.map_or("-".into(), |f| format!("{f:.0}")),
            r.floor_name.unwrap_or("-"),
            rate,
            r.floor_per_s
                .map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
            in_turn.map_or("-".into(), |f| format!("{f:.0}")),
            in_turn.map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
            cpu_bound.map_or("-".into(), |f| format!("{f:.0}")),
            cpu_bound.map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
        );
    }
}

/// Each `rotate` row against every floor of what it must do on the same cores taken in turn (the
/// target), and against its durable-write floor alone: on two cores the disk, warm, is not what
/// binds it.
fn print_rotate(rows: &[Row]) {
    let rotate: Vec<&Row> = rows
        .iter()
        .filter(|r| r.all_in_turn_per_s.is_some())
        .collect();
    if rotate.is_empty() {
        return;
    }
    heading(
        "| scenario | command | identities | rekey identities/s | durable-write floor identities/s | vs it | all floors in turn identities/s | vs all in turn (target 70%) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    );
    for r in rotate {
        let rate = r.identities as f64 / r.median.as_secs_f64();
        let pct = |f: Option<f64>| f.map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f));
        let num = |f: Option<f64>| f.map_or("-".into(), |f| format!("{f:.0}"));
        println!(
            "| {} | {} | {} | {rate:.0} | {} | {} | {} | {} |",
            r.scenario,
            r.command,
            r.identities,
            num(r.floor_per_s),
            pct(r.floor_per_s),
            num(r.all_in_turn_per_s),
            pct(r.all_in_turn_per_s),
        );
    }
}

/// `rotate` (keys reused) of the whole fleet, for the growth table: its time per identity and
/// its peak RSS, which must not grow with the fleet (no floor: the rotate rows give those).
fn growth_rotate_row(
    rows: &mut Vec<Row>,
    work: &Path,
    name: &str,
    n: usize,
    root: &Path,
    reps: usize,
) {
    let (mut times, mut rss) = (Vec::new(), None);
    for rep in 0..reps {
        eprintln!("bench: {name}: rotate (growth) ({}/{reps})", rep + 1);
        let copy = work.join(format!("rotate-growth-{rep}"));
        let (t, peak) = rotate_copy(root, &copy, "reuse");
        times.push(t);
        rss = rss.max(peak);
        if n >= LARGE {
            remove_tree(&copy); // the next repetition waits in `quiet_inodes`
        }
    }
    let t = median(times);
    rows.push(Row {
        scenario: name.into(),
        command: "rotate (growth)".into(),
        identities: n,
        median: t,
        floor_per_s: None,
        floor_name: None,
        cold_read_per_s: None,
        warm_read_per_s: None,
        cold_read_cores: None,
        openssl_per_s: None,
        all_in_turn_per_s: None,
        peak_rss_kib: rss,
    });
}

/// Warm `status` and `plan`, cold `status` and `rotate` at each P-256 size, from the rows already
/// measured, and the peak RSS at the largest size relative to the smallest.
fn print_growth(rows: &[Row], sizes: &[usize]) {
    let find = |n: usize, command: &str| {
        let scenario = format!("P-256 CA, {n}");
        rows.iter()
            .find(|r| r.scenario == scenario && r.command == command)
    };
    let secs = |r: Option<&Row>| r.map_or("-".into(), |r| format!("{:.2}", r.median.as_secs_f64()));
    let micros = |r: Option<&Row>| {
        r.map_or("-".into(), |r| {
            format!("{:.1}", 1e6 * r.median.as_secs_f64() / r.identities as f64)
        })
    };
    let mib = |r: Option<&Row>| {
        r.and_then(|r| r.peak_rss_kib)
            .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
    };
    let mut sizes = sizes.to_vec();
    sizes.sort();
    sizes.dedup();
    heading(
        "| identities | status warm s | µs per identity | peak RSS MiB | plan warm s | µs per identity | peak RSS MiB | status cold s | µs per identity | rotate s | µs per identity | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for &n in &sizes {
        let (status, plan, cold, rotate) = (
            find(n, "status"),
            find(n, "plan"),
            find(n, "status, cold cache"),
            find(n, "rotate (growth)"),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(n),
            secs(status),
            micros(status),
            mib(status),
            secs(plan),
            micros(plan),
            mib(plan),
            secs(cold),
            micros(cold),
            secs(rotate),
            micros(rotate),
            mib(rotate),
        );
    }
    let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) else {
        return;
    };
    if small == large {
        return;
    }
    let growth = |command: &str| {
        let rss = |n| find(n, command).and_then(|r| r.peak_rss_kib);
        let (a, b) = (rss(small)?, rss(large)?);
        Some(format!("{:+.0}%", 100.0 * (b as f64 / a as f64 - 1.0)))
    };
    let (status, plan, rotate) = (growth("status"), growth("plan"), growth("rotate (growth)"));
    println!();
    println!(
        "{} peak RSS from {} to {} identities for status, {} for plan, {} for rotate (target: at most +10%)",
        status.as_deref().unwrap_or("unknown"),
        thousands(small),
        thousands(large),
        plan.as_deref().unwrap_or("unknown"),
        rotate.as_deref().unwrap_or("unknown"),
    );
}

/// `1000000` as `1,000,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The cost of each output of the read side beside `status` on the same fleet.
fn print_outputs(rows: &[Row]) {
    println!();
    println!("| scenario | output | identities | median s | vs status |");
    println!("|---|---|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.command.contains("--format")) {
        let status = rows
            .iter()
            .find(|s| s.scenario == r.scenario && s.command == "status")
            .map(|s| s.median.as_secs_f64());
        println!(
            "| {} | {} | {} | {:.2} | {} |",
            r.scenario,
            r.command,
            r.identities,
            r.median.as_secs_f64(),
            status.map_or("-".into(), |s| format!(
                "{:+.1}%",
                100.0 * (r.median.as_secs_f64() / s - 1.0)
            )),
        );
    }
}

fn print_table(rows: &[Row]) {
    heading(
        "| scenario | command | identities | median s | identities/s | floor identities/s | vs floor | vs openssl script | peak RSS MiB | RSS budget MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for r in rows {
        let rate = r.identities as f64 / r.median.as_secs_f64();
        let budget = 64.0 + r.identities as f64 / 1024.0;
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {:.0} |",
            r.scenario,
            r.command,
            r.identities,
            r.median.as_secs_f64(),
            rate,
            r.floor_per_s.map_or("-".into(), |f| match r.floor_name {
                Some(name) => format!("{f:.0} ({name})"),
                None => format!("{f:.0}"),
            }),
            r.floor_per_s
                .map_or("-".into(), |f| format!("{:.0}%", 100.0 * rate / f)),
            r.openssl_per_s
                .map_or("-".into(), |o| format!("{:.0}x", rate / o)),
            r.peak_rss_kib
                .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            budget,
        );
    }
}
