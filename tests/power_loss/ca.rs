//! The CA rotation's stages cut: `ca begin`, `ca switch` and `ca finish` on the crash
//! filesystem, each cut at points spread over its journal steps (the change of `ca/` is built
//! in the run's `ca-new/`, then exchanged with `ca/` in one `renameat2(RENAME_EXCHANGE)`; the
//! trust files are a batch), and once it has exited. After each cut: `ca status` and `status`
//! read the disk as the cut left it, the next writer (`hooks retry`, which replays the run)
//! runs on the filesystem mounted again, then the stage again where the cut left it short.
//! Checked from outside (openssl and an independent JWT library, as `tests/ca_crash.rs` does):
//! the fleet is in the stage before or the stage after, never between; every certificate
//! verifies against its identity's `ca.pem` and the bundle; every token with a trusted CA's key;
//! every CA key of `ca/` is its certificate's; and the stage run again ends where an
//! uninterrupted one would, a retired key nowhere.

use std::path::Path;
use std::time::Instant;

use crate::ca_common::*;
use crate::checks::exited_whole;
use crate::common::*;
use crate::drive::{Cut, Tally, chosen, on_crashfs, runs_of};
use crate::lab::Lab;
use crashfs::Survives;

/// The stage `ca/` shows.
fn stage(root: &Path) -> &'static str {
    match (
        root.join("ca/next").exists(),
        root.join("ca/previous").exists(),
    ) {
        (false, false) => "steady",
        (true, false) => "begun",
        (false, true) => "switched",
        (true, true) => panic!("both ca/next and ca/previous"),
    }
}

/// Each CA key of `ca/` is its certificate's (openssl).
fn keys_are_the_certificates(root: &Path, what: &str) {
    for dir in ["ca", "ca/next", "ca/previous"] {
        let (cert, key) = (root.join(dir).join("ca.crt"), root.join(dir).join("ca.key"));
        if !cert.exists() {
            continue;
        }
        let of_cert = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
        let of_key = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
        assert_eq!(
            of_cert, of_key,
            "{what}: {dir}/ca.key is not {dir}/ca.crt's"
        );
    }
}

/// The fleet as it must be at every instant of a stage: see the module's comment.
fn whole(root: &Path, from: &str, to: &str, what: &str) -> &'static str {
    let now = stage(root);
    assert!(now == from || now == to, "{what}: stage {now}");
    every_identity_trusted(root, what);
    keys_are_the_certificates(root, what);
    now
}

fn ok(ran: &crate::drive::Ran, what: &str) {
    assert!(matches!(ran.code, Some(0)), "{what}: {}", ran.stderr);
}

/// Sweeps `ca <command>` from the state `base` holds, from stage `from` to `to`.
fn stage_cut(lab: &Lab, base: &Path, command: &str, from: &str, to: &str, tally: &mut Tally) {
    let name = format!("ca {command}");
    let args = ["ca".to_string(), command.to_string()];
    let retry = ["hooks".to_string(), "retry".to_string()];
    copy(base, lab.backing.path());
    let old_key = std::fs::read(lab.root().join("ca/previous/ca.key")).ok();
    let run = on_crashfs(lab, &args, None, Survives::Everything, &[]);
    ok(&run, &name);
    assert!(
        run.trace.iter().any(|op| op == "exchange ca"),
        "{name}: ca/ is exchanged in one step"
    );
    if !chosen(&name) {
        return;
    }
    // The stage's steps: its `ca` record `prepare` written; the exchange of `ca/` (a strict cut:
    // after `ready`, before the exchange); the root's sync after it (a reordering cut: the
    // exchange kept or not); the run directory's sync after that (the exchange durable);
    // `finish`'s removal of the retired key's copies; the trust files' batch; and once the run
    // has exited.
    let trace = &run.trace;
    let at = |what: &str| trace.iter().position(|op| op == what).map(|i| i as u64 + 1);
    let exchange = at("exchange ca").expect("ca/ is exchanged");
    let prepare = trace
        .iter()
        .enumerate()
        .filter(|(_, op)| *op == "write journal.jsonl")
        .nth(1)
        .map(|(i, _)| i as u64 + 1)
        .expect("the ca record's prepare");
    let mut cuts = vec![
        (Cut::At(prepare), Survives::Synced),
        (Cut::At(exchange), Survives::Synced),
        (Cut::At(exchange + 1), Survives::Some(0xca5eed + exchange)),
        (Cut::At(exchange + 2), Survives::Synced),
    ];
    // The trust files' batch once its files are renamed, before its `commit` (a cut once it is
    // `ready` would leave temporary files, which a reader waits ten seconds for).
    let renamed = trace.iter().rposition(|op| op == "rename ca.pem").map(|i| {
        let commit = trace[i..].iter().position(|op| op == "write journal.jsonl");
        (i + commit.expect("the batch commits") + 1) as u64
    });
    for then in [at("unlink ca.key"), renamed].into_iter().flatten() {
        cuts.push((Cut::At(then), Survives::Synced));
    }
    cuts.push((Cut::Exited, Survives::Synced));
    eprintln!(
        "{name}: {} requests, {} cut points",
        trace.len(),
        cuts.len()
    );
    for (cut, survives) in cuts {
        let t = Instant::now();
        copy(base, lab.backing.path());
        let what = match cut {
            Cut::At(at) => format!(
                "{name} cut at request {at} of {} ({}, {survives:?})",
                trace.len(),
                trace[at as usize - 1]
            ),
            Cut::Exited => format!("{name} cut once it exited"),
        };
        let runs_before = runs_of(&lab.root());
        let ran = on_crashfs(lab, &args, Some(cut), survives, &[]);
        assert!(ran.cut, "{what}: the power was never cut");
        if cut == Cut::Exited {
            exited_whole(&lab.root(), &runs_before, &what);
        }
        match survives {
            Survives::Some(_) => tally.reordering += 1,
            _ => tally.strict += 1,
        }
        let now = stage(&lab.root());
        assert!(now == from || now == to, "{what}: stage {now}");
        // Readers of the disk as the cut left it (a copy: no writes), while the next writer
        // (it replays the run the cut stopped) runs on the filesystem mounted again.
        let read = tempfile::tempdir().unwrap();
        copy(&lab.root(), &read.path().join("fleet"));
        let readers = std::thread::spawn(move || {
            [&["ca", "status"][..], &["status"]].map(|reader| {
                let (code, _, stderr) = run_unpinned(&read.path().join("fleet"), reader);
                (reader, code, stderr)
            })
        });
        let replayed = on_crashfs(lab, &retry, None, Survives::Everything, &[]);
        for (reader, code, stderr) in readers.join().unwrap() {
            assert!(matches!(code, 0 | 3 | 4), "{what}: {reader:?}: {stderr}");
        }
        ok(&replayed, &what);
        let now = whole(&lab.root(), from, to, &format!("{what}, replayed"));
        let staged = walkdir::WalkDir::new(lab.root().join(".rekey/runs"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name() == "ca-new")
            .count();
        assert_eq!(staged, 0, "{what}: a ca-new/ left after the replay");
        // Run again, the stage ends where an uninterrupted one would (in the stage it leads
        // to, a stage brings the trust files it did not reach).
        let bundle = std::fs::read(lab.root().join("ca/bundle.pem")).ok();
        let trusted = IDENTITIES.iter().all(|id| {
            std::fs::read(lab.root().join("nodes").join(id).join("ca.pem")).ok() == bundle
        });
        if now == from || !trusted {
            ok(
                &on_crashfs(lab, &args, None, Survives::Everything, &[]),
                &what,
            );
        }
        let again = format!("{what}, run again");
        assert_eq!(whole(&lab.root(), to, to, &again), to);
        let bundle = std::fs::read(lab.root().join("ca/bundle.pem")).unwrap();
        for id in IDENTITIES {
            let trust = std::fs::read(lab.root().join("nodes").join(id).join("ca.pem")).unwrap();
            assert_eq!(trust, bundle, "{again}: {id}'s ca.pem is not the bundle");
        }
        if let Some(key) = &old_key {
            no_file_holds_key(&lab.root(), key, &again);
        }
        eprintln!("{what}: whole ({:.1?})", t.elapsed());
    }
}

/// `ca begin`, `ca switch` and `ca finish`, each swept.
pub fn ca_stages_cut(tally: &mut Tally) {
    let lab = Lab::with_fleet(|root| {
        short_lived_fleet(root);
        IDENTITIES.iter().map(|id| format!("nodes/{id}")).collect()
    });
    let bases = tempfile::tempdir().unwrap();
    let mut from = "steady";
    for (command, to, before) in [
        ("begin", "begun", &[][..]),
        ("switch", "switched", &[&["ca", "begin"][..]][..]),
        (
            "finish",
            "steady",
            &[&["ca", "switch"][..], &["rotate"]][..],
        ),
    ] {
        for args in before {
            let (code, stdout, stderr) = run(&lab.root(), args);
            assert!(matches!(code, 0 | 4), "{args:?}: {stdout}{stderr}");
        }
        let base = bases.path().join(command);
        copy(lab.backing.path(), &base);
        stage_cut(&lab, &base, command, from, to, tally);
        copy(&base, lab.backing.path());
        from = to;
    }
}
