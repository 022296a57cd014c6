//! Disk full: a real `rekey rotate` on a fleet in a small tmpfs whose free space is cut to a
//! series of levels, so that the filesystem fills up at each stage of a run — its journal, its
//! first batch's temporary files, its second batch. Each time the run must end with a "no
//! space" error naming the file, every identity wholly old or wholly new, no temporary file,
//! backups intact; and once the space is back, a rerun must complete.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where it is refused the test says so and passes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A 64 MiB tmpfs in `work`, or `None`, said on stderr, where this user cannot mount one
    /// (CI runs as root: there the test always runs).
    fn for_test(work: &Path) -> Option<Tmpfs> {
        Tmpfs::mount(&work.join("mnt"), "64m")
            .map_err(|why| {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({why}); the disk-full test needs root"
                )
            })
            .ok()
    }

    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a zeroed struct for statvfs to fill.
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }

    /// Writes a file of zeros (tmpfs gives a sparse file no space) until `left` bytes are free.
    fn fill_until(&self, left: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut to_write = self.free_bytes().saturating_sub(left);
        while to_write > 0 {
            let n = to_write.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n]).unwrap();
            to_write -= n as u64;
        }
        file.sync_all().unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_rotate_cleanly_and_a_rerun_completes() {
    let work = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::for_test(work.path()) else {
        return;
    };
    // Two journal batches (1,024 + 476), so that the disk can fill up between them.
    let template = work.path().join("template");
    let ids = fleet(&template, 1500, 30);
    let original = snapshot(&template);
    let root = tmpfs.0.join("fleet");
    let rotate = ["rotate"];
    // Free space left at the start of each run: none (the run cannot begin its journal), a
    // little (its first `prepare` record does not fit), some (the first batch's temporary
    // files do not fit), most of what the run needs (the second batch's do not).
    let levels: [(u64, &str); 4] = [
        (0, "nothing free"),
        (64 << 10, "64 KiB free"),
        (4 << 20, "4 MiB free"),
        (14 << 20, "14 MiB free"),
    ];
    let mut partial = 0;
    for (left, what) in levels {
        copy(&template, &root);
        let filler = tmpfs.fill_until(left);
        let (code, stdout, stderr) = run(&root, &rotate);
        assert!(matches!(code, 1 | 3), "{what}: exit {code}\n{stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{what}: no \"no space\" error:\n{stderr}"
        );
        let first = stderr.lines().find(|l| l.contains("No space")).unwrap();
        assert!(
            first.contains(&root.display().to_string()),
            "{what}: the error names no file: {first}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        eprintln!("{what}: exit {code}: {first}");
        assert!(
            temp_files(&root).is_empty(),
            "{what}: {:?}",
            temp_files(&root)
        );
        let new = whole(&ids, &original, &snapshot(&root), what);
        if code == 1 {
            assert_eq!(new, 0, "{what}: exit 1 promises nothing was written");
        } else {
            assert!(new > 0 && new < ids.len(), "{what}: {new} new");
            assert!(
                stdout.contains(&format!("{new} done")),
                "{what}: the summary counts {new} done:\n{stdout}"
            );
            partial += 1;
        }
        // Space is back: the rerun replays whatever is left and completes.
        std::fs::remove_file(filler).unwrap();
        let (code, _, stderr) = run(&root, &rotate);
        assert_eq!(code, 0, "{what}: the rerun fails:\n{stderr}");
        assert_eq!(
            whole(&ids, &original, &snapshot(&root), what),
            ids.len(),
            "{what}: after the rerun every identity is new"
        );
        backups_intact(&root, what);
        let (code, _, stderr) = run(&root, &["status"]);
        assert_eq!(code, 0, "{what}: status after the rerun:\n{stderr}");
        assert!(temp_files(&root).is_empty());
    }
    assert_eq!(
        partial, 1,
        "exactly one level stops between the two batches"
    );
}

#[test]
fn a_disk_that_fills_while_hooks_run_keeps_the_rotation_its_exit_code_and_its_report() {
    let work = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::for_test(work.path()) else {
        return;
    };
    // Two journal batches (1,024 + 76): the disk fills during the first one's deploy hooks.
    let root = tmpfs.0.join("fleet");
    let ids = fleet(&root, 1100, 30);
    let original = snapshot(&root);
    let deploys = work.path().join("deploys");
    let posts = work.path().join("posts");
    let filled = work.path().join("filled");
    let filler = tmpfs.0.join("filler");
    let hook = |kind: &str, text: String| install_hook(&root, kind, "10-hook", &text);
    // One identity's hook fills the filesystem (once); every hook says it ran, outside it.
    hook(
        "deploy",
        format!(
            "echo \"$REKEY_RUN_ID $REKEY_NODE/$REKEY_SERVICE\" >> {d}\n\
             if [ \"$REKEY_SERVICE\" = svc-0150 ] && [ ! -e {f} ]; then\n\
             touch {f}; dd if=/dev/zero of={z} bs=1M 2>/dev/null\nfi\nexit 0",
            d = deploys.display(),
            f = filled.display(),
            z = filler.display()
        ),
    );
    hook(
        "post",
        format!("echo \"$REKEY_RUN_ID\" >> {}", posts.display()),
    );
    let (code, stdout, stderr) = run(&root, &["rotate", "--jobs", "2"]);
    assert!(filled.exists(), "the filling hook ran:\n{stderr}");
    let new = whole(&ids, &original, &snapshot(&root), "hooks filled the disk");
    eprintln!("exit {code}, {new} new:\n{stderr}");
    assert!(new >= 1000, "the first batch is in place: {new}");
    assert_eq!(
        code, 3,
        "the run did work and was stopped: exit 3, not 1\n{stderr}"
    );
    assert!(!stderr.contains("nothing was written"), "{stderr}");
    assert!(
        stdout.contains(&format!("{new} done")),
        "the report is printed, counting {new} done:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let first = run_ids(&root).remove(0);

    // Space is back: the next writer saves the run's report, runs the hooks it left pending,
    // then its post hook, and completes the rotation.
    std::fs::remove_file(&filler).unwrap();
    let (code, _, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(whole(&ids, &original, &snapshot(&root), "rerun"), ids.len());
    let saved = root.join(".rekey/runs").join(&first).join("report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("its report is saved")).unwrap();
    let done = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "done")
        .count();
    assert_eq!(done, new, "the saved report counts what the run did");
    let ran = std::fs::read_to_string(&deploys).unwrap();
    for i in report["identities"].as_array().unwrap() {
        if i["outcome"] == "done" {
            let line = format!(
                "{first} {}/{}",
                i["node"].as_str().unwrap(),
                i["service"].as_str().unwrap()
            );
            assert!(
                ran.lines().any(|l| l == line),
                "{line}: its deploy hook never ran"
            );
        }
    }
    let posted = std::fs::read_to_string(&posts).unwrap();
    assert!(
        posted.lines().any(|l| l == first),
        "the stopped run's post hook ran:\n{posted}"
    );
    assert_nothing_pending(&root);
    assert!(temp_files(&root).is_empty());
}
