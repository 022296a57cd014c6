//! `cargo bench`: rekey against the floors of this machine, measured in the same run.
//!
//! For each scenario it builds a fleet with the library's generator, then times the real `rekey`
//! binary (`status`, `plan`, `rotate`) and, on the same fleet and machine:
//! - the crypto + parse floor: the bare certificate parse and the two signature checks (certificate
//!   and token) per identity, on every core, from memory;
//! - the durable-write floor: replacing as many small files as `rotate` replaces with the best
//!   strategy found (temporary files written in parallel, one `syncfs`, renames, one `syncfs`);
//! - the script an operator would otherwise write: `openssl x509 -req` per certificate plus an
//!   `openssl dgst -sign` per token, on a sample (when `openssl` is installed).
//!
//! Beside `status` (JSON to stdout) it times the other outputs of the read side on the same
//! fleet, each written to a file: `status --format prometheus`, `status --format html` and
//! `plan --format html`, and reports each one's time as a share of `status`'s.
//!
//! Sizes for `status` and `plan`: `REKEY_BENCH_SIZES` (default `10000,100000`); size for
//! `rotate`: `REKEY_BENCH_ROTATE` (default 20000, as docs/design.md §7 states the target); repetitions:
//! `REKEY_BENCH_REPS` (default 3; medians are reported); RSA key generation sample:
//! `REKEY_BENCH_RSA` (default 200). Fleets live in a temporary directory (`TMPDIR`).
//!
//! Fleets are dated from a pinned instant and every command runs with `--as-of` it, so the same
//! fleets are measured whatever the date (the operator script's `openssl x509 -req -days 90`
//! dates its certificates from the clock, but nothing judges them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    openssl_per_s: Option<f64>,
    peak_rss_kib: Option<u64>,
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

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
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

/// The crypto + parse floor: parse each certificate and verify it and its token, on all cores,
/// from memory. Returns identities per second.
fn crypto_floor(root: &Path, reps: usize) -> f64 {
    let ca_pem = std::fs::read(root.join("ca/ca.crt")).unwrap();
    let ca_der = rekey::pemblock::single(&ca_pem).unwrap().der;
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let ca_model = rekey::ca::from_pem(&ca_pem, None).unwrap();
    let spki = ca.public_key();
    let inputs: Vec<(Vec<u8>, Vec<u8>)> = identity_dirs(root)
        .iter()
        .map(|d| {
            (
                std::fs::read(d.join("cert.pem")).unwrap(),
                std::fs::read(d.join("token.jwt")).unwrap(),
            )
        })
        .collect();
    let mut validation = jsonwebtoken::Validation::new(ca_model.jwt_alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let times: Vec<Duration> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            let ok = inputs
                .par_iter()
                .filter(|(cert, token)| {
                    let der = x509_parser::pem::parse_x509_pem(cert).unwrap().1.contents;
                    let (_, c) = X509Certificate::from_der(&der).unwrap();
                    let text = std::str::from_utf8(token).unwrap().trim_end();
                    c.verify_signature(Some(spki)).is_ok()
                        && jsonwebtoken::decode::<serde_json::Value>(
                            text,
                            ca_model.decoding_key(),
                            &validation,
                        )
                        .is_ok()
                })
                .count();
            assert_eq!(ok, inputs.len());
            start.elapsed()
        })
        .collect();
    inputs.len() as f64 / median(times).as_secs_f64()
}

/// The durable-write floor: replace `files_per_identity` small files per identity with the best
/// strategy found. Returns identities per second.
fn write_floor(root: &Path, scratch: &Path, files_per_identity: usize, reps: usize) -> f64 {
    let names = ["cert.pem", "token.jwt", "key.pem"];
    let times: Vec<Duration> = (0..reps)
        .map(|_| {
            copy_tree(root, scratch);
            let dirs = identity_dirs(scratch);
            let start = Instant::now();
            dirs.par_iter().for_each(|d| {
                for name in &names[..files_per_identity] {
                    std::fs::write(d.join(format!(".tmp.{name}")), [b'x'; 700]).unwrap();
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
        })
        .collect();
    identity_dirs(scratch).len() as f64 / median(times).as_secs_f64()
}

fn sync_fs(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: valid descriptor for the duration of the call.
    assert_eq!(
        unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) },
        0
    );
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

fn time_command(args: &[&str], reps: usize, prepare: &mut dyn FnMut()) -> (Duration, Option<u64>) {
    let mut times = Vec::new();
    let mut peak: Option<u64> = None;
    for _ in 0..reps {
        prepare();
        let (t, rss) = run_rekey(args);
        times.push(t);
        peak = peak.max(rss);
    }
    (median(times), peak)
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
) {
    eprintln!("bench: {name}: building {n} identities");
    let work = &work.join(name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    std::fs::create_dir_all(work).unwrap();
    let root = work.join("fleet");
    build_fleet(&root, n, ca_alg, leaf);
    sync_fs(&root);
    let root_s = root.to_str().unwrap().to_string();
    if !read_commands.is_empty() {
        eprintln!("bench: {name}: crypto + parse floor");
        let crypto = crypto_floor(&root, reps);
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
        // Round-robin: each repetition runs every command once, so that a change in the
        // machine's load weighs on all of them alike and their ratios stay readable.
        let mut times = vec![Vec::new(); commands.len()];
        let mut peaks = vec![None; commands.len()];
        for rep in 0..reps {
            for (at, (label, args)) in commands.iter().enumerate() {
                eprintln!("bench: {name}: {label} ({}/{reps})", rep + 1);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (t, rss) = run_rekey(&args);
                times[at].push(t);
                peaks[at] = peaks[at].max(rss);
            }
        }
        for (((label, _), t), rss) in commands.into_iter().zip(times).zip(peaks) {
            rows.push(Row {
                scenario: name.into(),
                command: label,
                identities: n,
                median: median(t),
                floor_per_s: Some(crypto),
                openssl_per_s: None,
                peak_rss_kib: rss,
            });
        }
    }
    let openssl = if rotate_modes.is_empty() {
        None
    } else {
        openssl_script(&root, &work.join("openssl"), 40)
    };
    for keys in rotate_modes {
        let copy = work.join("rotate");
        let files = if *keys == "rotate" { 3 } else { 2 };
        eprintln!("bench: {name}: durable-write floor ({files} files per identity)");
        let floor = write_floor(&root, &work.join("floor"), files, reps);
        eprintln!("bench: {name}: rotate (keys = {keys})");
        let copy_s = copy.to_str().unwrap().to_string();
        let args = [
            "rotate",
            "--root",
            &copy_s,
            "--as-of",
            AS_OF,
            "--progress",
            "never",
            "--format",
            "json",
        ];
        let (t, rss) = time_command(&args, reps, &mut || {
            copy_tree(&root, &copy);
            std::fs::write(
                copy.join("rekey.toml"),
                format!("version = 1\nkeys = \"{keys}\"\n"),
            )
            .unwrap();
        });
        rows.push(Row {
            scenario: name.into(),
            command: format!("rotate, keys = {keys}"),
            identities: n,
            median: t,
            floor_per_s: Some(floor),
            openssl_per_s: openssl,
            peak_rss_kib: rss,
        });
        let _ = std::fs::remove_dir_all(&copy);
        let _ = std::fs::remove_dir_all(work.join("floor"));
    }
    let _ = std::fs::remove_dir_all(work);
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
    let rsa_sample = number("REKEY_BENCH_RSA", "200");
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
        );
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
        );
    }
    print_table(&rows);
    print_outputs(&rows);
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
    println!();
    println!(
        "| scenario | command | identities | median s | identities/s | floor identities/s | vs floor | vs openssl script | peak RSS MiB | RSS budget MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
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
            r.floor_per_s.map_or("-".into(), |f| format!("{f:.0}")),
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
