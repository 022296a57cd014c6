//! Power loss: rekey on a filesystem that forgets what was not made durable (`crates/crashfs`,
//! FUSE). Each command is run once whole to learn its requests, then again from the same state
//! with the power cut at chosen requests: the journal's appends and syncs, the report, the hook
//! marker, the audit log, and points spread over the staging and the renames; and the replay
//! is cut in turn (a rotate cut after staging, and after its ready mark, then the next rotate
//! cut at its first steps). After each cut the filesystem keeps only what was synced (strict)
//! or that and a seeded random subset of the rest (reordering); `status` reads the disk as the
//! cut left it, the next writing command runs on the filesystem mounted again, and the fleet is
//! checked from outside (rekey's verifier; openssl on every identity, in one pass): every
//! identity wholly old or wholly new, no empty or partial file, none lost, every run's report
//! whole and its backups the old bytes, every hook run, and `rollback` byte-exact. The fleet is
//! built once and copied for each cut. Needs root and /dev/fuse.
//!
//! The modules: [`lab`] the fleet and its hooks, [`drive`] the cut driver (one run on the crash
//! filesystem, the cut points, the sweep of a command), [`checks`] what must hold after a cut
//! (with [`openssl`] the independent check), [`scenarios`] the sweeps per command, [`controls`]
//! the controls and the durability paths, [`ca`] the CA rotation's stages.

#[path = "../ca_common/mod.rs"]
mod ca_common;
#[path = "../common/mod.rs"]
mod common;

mod ca;
mod checks;
mod controls;
mod drive;
mod lab;
mod openssl;
mod scenarios;

use std::time::Instant;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args
        .windows(2)
        .any(|w| w[0] == "--skip" && w[1] == "power_loss")
    {
        println!("power loss: skipped (--skip power_loss)");
        return;
    }
    if !is_root() {
        // The crash filesystem is a FUSE mount, which needs root (CI runs as root).
        println!("power loss: SKIPPED: not root, the crash filesystem cannot be mounted");
        return;
    }
    let started = Instant::now();
    controls::controls();
    controls::durability_paths();
    let mut tally = drive::Tally::default();
    scenarios::power_cuts_leave_every_identity_whole(&mut tally);
    ca::ca_stages_cut(&mut tally);
    println!(
        "power loss: {} cuts ({} strict, {} reordering), {} torn, {} lost",
        tally.strict + tally.reordering,
        tally.strict,
        tally.reordering,
        tally.torn,
        tally.lost
    );
    assert_eq!((tally.torn, tally.lost), (0, 0));
    println!("power loss: done in {:.0?}", started.elapsed());
}
