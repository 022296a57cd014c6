//! The sweeps per command: rotate (on both durability paths), the replay of a cut rotate, apply,
//! recover --yes, rollback and prune.

use crate::checks::Expect;
use crate::common::*;
use crate::drive::{Cut, Cuts, Tally, on_crashfs, sweep};
use crate::lab::{lab, newest_run};
use crashfs::Survives;

pub fn power_cuts_leave_every_identity_whole(tally: &mut Tally) {
    let lab = lab();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let hooks = |cmd: &[&str]| {
        let mut v = s(cmd);
        v.extend([
            "--deploy-hook".into(),
            lab.deploy_hook(),
            "--post-hook".into(),
            lab.post_hook(),
        ]);
        v
    };
    let pristine = tempfile::tempdir().unwrap();
    let base = pristine.path().join("base");
    copy(lab.backing.path(), &base);
    let due: Vec<String> = lab
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 9)
        .map(|(_, id)| id.clone())
        .collect();
    let expired: Vec<String> = lab
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 9)
        .map(|(_, id)| id.clone())
        .collect();
    let rotate = hooks(&["rotate"]);
    let new = Expect::New { targets: &due };

    // rotate, with hooks: the next writing command is the same rotate (replay, then the rest).
    // Its whole run shows the path FUSE gets: an fsync of every directory it changed.
    let fallback = sweep(
        &lab,
        &base,
        "rotate",
        &rotate,
        &rotate,
        &new,
        &due,
        Cuts::Over { spread: 4, most: 6 },
        &[],
        tally,
    );
    assert!(
        fallback
            .trace
            .iter()
            .any(|op| op.starts_with("fsyncdir svc-")),
        "the fallback syncs identity directories"
    );

    // rotate on the syncfs path, each syncfs told to the crash filesystem: no directory synced
    // of its own, every phase one syncfs.
    let note = lab
        .mount
        .path()
        .join(crashfs::CONTROL)
        .display()
        .to_string();
    let hooked = sweep(
        &lab,
        &base,
        "rotate (syncfs)",
        &rotate,
        &rotate,
        &new,
        &due,
        Cuts::Over { spread: 1, most: 3 },
        &[("REKEY_SYNCFS_NOTE", note)],
        tally,
    );
    assert!(
        hooked.syncfs >= 2,
        "every syncfs reaches the crash filesystem through the hook"
    );
    assert!(
        !hooked
            .trace
            .iter()
            .any(|op| op.starts_with("fsyncdir svc-")),
        "the syncfs path syncs no directory of its own"
    );
    println!(
        "paths: FUSE gets an fsync of every file and directory ({} requests); the syncfs path, told to the crash filesystem, {} syncfs",
        fallback.trace.len(),
        hooked.syncfs
    );

    // The replay itself cut: from a rotate cut once its batch was staged (the replay undoes
    // it), and once it was marked ready (the replay finishes it), the next rotate is cut in
    // turn, then run again.
    // The staging's sync begins with the first temporary file's; the next journal append is
    // the batch's hooks (then `ready`), and the first rename after it is the first file put in
    // place.
    let trace = &fallback.trace;
    let synced = trace
        .iter()
        .position(|op| op.starts_with("fsync .rekey-new"))
        .expect("the rotate staged files");
    let after = |what: &str| {
        synced
            + trace[synced..]
                .iter()
                .position(|op| op.starts_with(what))
                .expect("the rotate went on after staging")
            + 1
    };
    for (step, at) in [
        ("staged", after("write journal.jsonl")),
        ("ready", after("rename ")),
    ] {
        let at = at as u64;
        copy(&base, lab.backing.path());
        let ran = on_crashfs(&lab, &rotate, Some(Cut::At(at)), Survives::Synced, &[]);
        assert!(ran.cut, "the rotate to replay was cut");
        let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
        let cut = pristine.path().join(step);
        copy(lab.backing.path(), &cut);
        let name = format!("replay of a batch {step}");
        sweep(
            &lab,
            &cut,
            &name,
            &rotate,
            &rotate,
            &new,
            &due,
            Cuts::First(4),
            &[],
            tally,
        );
    }

    // apply of a reviewed plan: the same protocol, from a plan file.
    copy(&base, lab.backing.path());
    let plan = lab.hooks.join("plan.toml").display().to_string();
    let planned = on_crashfs(
        &lab,
        &s(&["plan", "-o", &plan]),
        None,
        Survives::Everything,
        &[],
    );
    assert!(
        matches!(planned.code, Some(0 | 3 | 4)),
        "{}",
        planned.stderr
    );
    let apply = hooks(&["apply", &plan]);
    sweep(
        &lab,
        &base,
        "apply",
        &apply,
        &apply,
        &new,
        &due,
        Cuts::Over { spread: 1, most: 3 },
        &[],
        tally,
    );

    // recover --yes: the audit log's lines too.
    let recover = hooks(&["recover", "--yes", "--all", "--reason", "power loss test"]);
    sweep(
        &lab,
        &base,
        "recover",
        &recover,
        &recover,
        &Expect::New { targets: &expired },
        &expired,
        Cuts::Over { spread: 3, most: 4 },
        &[],
        tally,
    );

    // rollback of a committed rotate: byte-exact after the cut and the rollback again.
    copy(&base, lab.backing.path());
    let ran = on_crashfs(&lab, &rotate, None, Survives::Everything, &[]);
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    let _ = std::fs::remove_file(lab.hooks.join("deploy.log"));
    let run_id = newest_run(&lab.root());
    let rotated = pristine.path().join("rotated");
    copy(lab.backing.path(), &rotated);
    let rollback = hooks(&["rollback", &run_id]);
    let original = snapshot(&base.join("fleet"));
    sweep(
        &lab,
        &rotated,
        "rollback",
        &rollback,
        &rollback,
        &Expect::Exactly(&original),
        &due,
        Cuts::Over { spread: 2, most: 3 },
        &[],
        tally,
    );

    // prune of the rolled-back rotate's backups: the fleet untouched.
    copy(&rotated, lab.backing.path());
    let ran = on_crashfs(&lab, &rollback, None, Survives::Everything, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let rolled = pristine.path().join("rolled");
    copy(lab.backing.path(), &rolled);
    let prune = s(&["prune", "--keep", "1"]);
    sweep(
        &lab,
        &rolled,
        "prune",
        &prune,
        &prune,
        &Expect::Exactly(&original),
        &[],
        Cuts::Over { spread: 1, most: 3 },
        &[],
        tally,
    );

    if std::env::var_os("REKEY_POWER_ONLY").is_none() {
        let cuts = tally.strict + tally.reordering;
        assert!(
            cuts >= 30,
            "at least 30 cuts of the fleet's commands, not {cuts}"
        );
    }
}
