//! Running one resolved hook: in its identity's directory handle, handed its credential files on
//! descriptors, in its own process group, its output kept (capped) in the run's directory, and
//! every process it started killed when it ends or at its timeout ([`crate::write::reap`]).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use std::path::PathBuf;

use crate::write::record::calls::{HookCall, HookKind, HookResult, HookStatus};

/// How much of a hook's output is kept.
pub(crate) const OUTPUT_CAP: u64 = 64 * 1024;

/// What runs for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Program {
    /// Through `sh -c`.
    Shell(String),
    /// An executable of a hooks folder.
    Exec(PathBuf),
}

/// Where a call runs and what it is told.
pub(crate) struct Context<'a> {
    pub(crate) root: &'a Path,
    /// The fleet root, open: a deploy hook runs in its identity's directory, opened beneath it
    /// without following a link (docs/design.md §8).
    pub(crate) fleet: &'a crate::fsio::RootDir,
    pub(crate) run_id: &'a str,
    pub(crate) run: &'a crate::store::RunDir,
    /// For post hooks: the report's path and the counts.
    pub(crate) post_env: Vec<(String, String)>,
}

pub(super) fn run_program(
    call: &HookCall,
    program: &Program,
    ctx: &Context<'_>,
    timeout: Duration,
    written_in: Option<crate::fsio::FileId>,
) -> HookResult {
    let logs = ctx.run.hook_logs();
    let log = logs.join(format!("{}.log", call.call));
    let rel_log = log
        .strip_prefix(ctx.root)
        .unwrap_or(&log)
        .to_string_lossy()
        .into_owned();
    let result = |status, exit_code, detail: String| HookResult {
        source: call.source.label(),
        status,
        exit_code,
        detail,
        log: rel_log.clone(),
    };
    let out = match open_log(&logs, &log) {
        Ok(out) => out,
        Err(e) => {
            return result(
                HookStatus::Failed,
                None,
                format!("cannot write its log: {e:#}"),
            );
        }
    };
    let dir = match &call.id {
        Some(id) => match ctx.fleet.identity(id) {
            Ok(dir) if written_in.is_none_or(|id| id == dir.file_id()) => Some(dir),
            Ok(_) | Err(_) => {
                return result(
                    HookStatus::Failed,
                    None,
                    "not run: its directory was moved or replaced after its files were written, \
                     or is no longer a directory beneath the fleet root (a link or another \
                     directory is at its name)"
                        .to_string(),
                );
            }
        },
        None => None,
    };
    let mut command = match program {
        Program::Shell(text) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(text);
            c
        }
        Program::Exec(path) => {
            let runnable =
                std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
            if !runnable {
                let rel = path.strip_prefix(ctx.root).unwrap_or(path);
                return result(
                    HookStatus::Failed,
                    None,
                    format!("{} is not executable (chmod +x it)", rel.display()),
                );
            }
            Command::new(path)
        }
    };
    let marker = format!("{}:{}", ctx.run_id, call.call);
    let handed = dir.as_ref().map(Handed::open).unwrap_or_default();
    match &dir {
        Some(dir) => {
            use std::os::fd::AsRawFd;
            let fd = dir.as_fd().as_raw_fd();
            let moves: Vec<(i32, i32)> = handed
                .iter()
                .map(|h| (h.fd.as_raw_fd(), h.number))
                .collect();
            // SAFETY: fchdir and dup2 are async-signal-safe; `dir` and `handed` (and so their
            // descriptors) stay open until the child has been spawned. The sources are numbered
            // 10 or above, so no dup2 overwrites another's source; the targets lose O_CLOEXEC.
            unsafe {
                command.pre_exec(move || {
                    if libc::fchdir(fd) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    for &(from, to) in &moves {
                        if libc::dup2(from, to) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        None => {
            command.current_dir(ctx.root);
        }
    }
    command
        .envs(env(call, ctx, dir.as_ref(), &handed))
        .stdin(Stdio::null())
        .process_group(0);
    match spawn_capped(command, out, timeout, &marker) {
        Ok((Some(0), false)) => result(HookStatus::Ok, Some(0), String::new()),
        Ok((code, false)) => result(HookStatus::Failed, code, "exited with an error".to_string()),
        Ok((_, true)) => result(
            HookStatus::TimedOut,
            None,
            format!(
                "killed after {} s (hook_timeout_seconds), with every process it started",
                timeout.as_secs()
            ),
        ),
        Err(e) => result(HookStatus::Failed, None, format!("cannot run: {e}")),
    }
}

/// A credential file a deploy hook is handed: opened through the identity's handle (a regular
/// file, no link followed) and given to the hook as descriptor `number` (3 the certificate, 4
/// the key, 5 the token), named by `REKEY_<KIND>_FD` beside its path in `REKEY_<KIND>`.
struct Handed {
    var: &'static str,
    fd: std::os::fd::OwnedFd,
    number: i32,
    path: String,
}

impl Handed {
    fn open(dir: &crate::fsio::IdentityDir) -> Vec<Handed> {
        use crate::scan::{CERT_FILE, KEY_FILE, TOKEN_FILE};
        [
            ("REKEY_CERT", CERT_FILE, 3),
            ("REKEY_KEY", KEY_FILE, 4),
            ("REKEY_TOKEN", TOKEN_FILE, 5),
        ]
        .into_iter()
        .filter_map(|(var, name, number)| {
            Some(Handed {
                var,
                fd: dir.open_regular(name)?,
                number,
                path: dir.shown(name).to_string_lossy().into_owned(),
            })
        })
        .collect()
    }
}

/// A deploy hook's environment names the files it is handed: regular files through the
/// identity's handle as it starts (a link there is named by no variable), open on descriptors 3,
/// 4 and 5. A hook reading the descriptor reads exactly what rekey opened; one opening the path
/// must not follow a link there (docs/design.md §6).
fn env(
    call: &HookCall,
    ctx: &Context<'_>,
    dir: Option<&crate::fsio::IdentityDir>,
    handed: &[Handed],
) -> Vec<(String, String)> {
    let mut env = vec![("REKEY_RUN_ID".to_string(), ctx.run_id.to_string())];
    if call.kind == HookKind::Deploy
        && let Some(dir) = dir
    {
        let file = |var: &str| {
            handed
                .iter()
                .find(|h| h.var == var)
                .map(|h| h.path.clone())
                .unwrap_or_default()
        };
        env.extend(
            handed
                .iter()
                .map(|h| (format!("{}_FD", h.var), h.number.to_string())),
        );
        env.extend([
            (
                "REKEY_NODE".to_string(),
                call.id.as_ref().map_or("", |id| id.node()).to_string(),
            ),
            (
                "REKEY_SERVICE".to_string(),
                call.id.as_ref().map_or("", |id| id.service()).to_string(),
            ),
            (
                "REKEY_DIR".to_string(),
                dir.path().to_string_lossy().into_owned(),
            ),
            ("REKEY_CERT".to_string(), file("REKEY_CERT")),
            ("REKEY_KEY".to_string(), file("REKEY_KEY")),
            ("REKEY_TOKEN".to_string(), file("REKEY_TOKEN")),
            (
                "REKEY_NOT_AFTER".to_string(),
                call.not_after.clone().unwrap_or_default(),
            ),
            ("REKEY_CA_BUNDLE".to_string(), ca_bundle(ctx.root)),
        ]);
    } else {
        env.extend(ctx.post_env.iter().cloned());
        env.push(("REKEY_CA_BUNDLE".to_string(), ca_bundle(ctx.root)));
    }
    env
}

/// `ca/bundle.pem`, every CA the fleet trusts (what a CA rotation keeps each `ca.pem` equal
/// to), when it is a regular file; empty otherwise.
fn ca_bundle(root: &Path) -> String {
    let bundle = crate::ca::CaDir::of(root).bundle();
    if std::fs::symlink_metadata(&bundle).is_ok_and(|m| m.is_file()) {
        bundle.to_string_lossy().into_owned()
    } else {
        String::new()
    }
}

fn open_log(dir: &Path, log: &Path) -> Result<std::fs::File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))?;
    // Exactly 0700 and 0600, whatever the umask took away or an earlier release left.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to restrict {}", dir.display()))?;
    private_file(std::fs::OpenOptions::new().append(true).create(true), log)
}

/// Opens (creating if need be) a file of rekey's own state as 0600 exactly, never through a
/// link.
pub(crate) fn private_file(
    options: &mut std::fs::OpenOptions,
    path: &Path,
) -> Result<std::fs::File> {
    let file = options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("failed to restrict {}", path.display()))?;
    Ok(file)
}

/// Spawns `command` with its output (stdout and stderr) going, capped, to `out`; waits for it
/// until `timeout`, then kills its whole process group. Either way, every process it started
/// that is still there when it ends is killed too ([`super::reap`]), so that a hook leaves
/// nothing running. Returns (exit code, timed out).
fn spawn_capped(
    mut command: Command,
    out: std::fs::File,
    timeout: Duration,
    marker: &str,
) -> std::io::Result<(Option<i32>, bool)> {
    let (mut reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let (mut child, mut tracker) = crate::write::reap::spawn(&mut command, marker)?;
    drop(command); // closes this process's copies of the pipe's writing end
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = out;
        let mut kept = (&mut reader).take(OUTPUT_CAP);
        let _ = std::io::copy(&mut kept, &mut out);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let _ = out.flush();
        let _ = done_tx.send(());
    });
    let started = Instant::now();
    let group = child.id() as i32;
    let status = loop {
        tracker.tick();
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            // SAFETY: signalling the process group this hook was started in.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let left = tracker.kill_all();
    if left > 0 && status.is_some() {
        eprintln!(
            "rekey: warning: hook {marker} left {} running when it ended: killed (start daemons \
             through systemd, not from a hook)",
            crate::count::count(left, "process", "processes")
        );
    }
    drop(tracker);
    // Its output ends when every process holding the pipe has.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    Ok(match status {
        Some(status) => (status.code(), false),
        None => (None, true),
    })
}
