//! Hooks: what reloads a service once its new credentials are in place. Deploy hooks run once
//! per rotated (or restored) identity after its batch commits; post hooks once per run that
//! changed something. Sources, in order: the policy's `[services.NAME] reload`, `--deploy-hook` /
//! `--post-hook`, and the executables in `<root>/hooks/deploy/` and `<root>/hooks/post/` (byte
//! order of name).
//!
//! A hook is never lost: every call is journaled (`hooks`) before the batch's files are renamed,
//! and its success (`hook_done`) after it ran. A call that failed, timed out or never ran (a
//! crash) stays pending; the next writing run, or `rekey hooks retry`, runs it first. Each hook
//! runs through `sh -c` (or directly, from the hooks folders) in the identity's directory, in its
//! own process group, killed whole at the timeout; its output is kept, capped, in the run's
//! directory (0600).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// How much of a hook's output is kept.
pub const OUTPUT_CAP: u64 = 64 * 1024;

/// One hook to run, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookCall {
    /// Unique within its run.
    pub call: u32,
    /// `deploy` (per identity) or `post` (per run).
    pub kind: HookKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where it came from: `reload`, `--deploy-hook`, `--post-hook`, `hooks/deploy/NAME`.
    pub source: String,
    /// A shell command, or the path of an executable (`shell` false).
    pub command: String,
    pub shell: bool,
    /// The new credentials' expiry (deploy hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Deploy,
    Post,
}

/// How a hook ended, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookResult {
    pub source: String,
    /// `ok`, `failed` or `timed out`.
    pub status: HookStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, when it did not even run, or what it died of.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Its output (first 64 KiB), relative to the fleet root.
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookStatus {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "timed out")]
    TimedOut,
}

/// The hooks of a writing run, from the policy, the command line and the hooks folders.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    reload: std::collections::BTreeMap<String, String>,
    deploy: Vec<Program>,
    post: Vec<Program>,
    timeout: Duration,
}

#[derive(Debug, Clone)]
struct Program {
    source: String,
    command: String,
    shell: bool,
}

/// The hooks a command line names (`--deploy-hook`, `--post-hook`).
#[derive(Debug, Clone, Default)]
pub struct HookArgs {
    pub deploy: Vec<String>,
    pub post: Vec<String>,
    /// `--no-hooks`: run none, and say so in the report.
    pub skip: bool,
}

impl HookSet {
    /// The hooks of the fleet at `root` under `policy`, plus those of the command line.
    pub fn load(root: &Path, policy: &crate::policy::Policy, args: &HookArgs) -> Result<HookSet> {
        let shell = |source: &str, command: &String| Program {
            source: source.to_string(),
            command: command.clone(),
            shell: true,
        };
        let mut deploy: Vec<Program> = args
            .deploy
            .iter()
            .map(|c| shell("--deploy-hook", c))
            .collect();
        deploy.extend(folder(root, "deploy")?);
        let mut post: Vec<Program> = args.post.iter().map(|c| shell("--post-hook", c)).collect();
        post.extend(folder(root, "post")?);
        Ok(HookSet {
            reload: policy
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.reload.clone()?)))
                .collect(),
            deploy,
            post,
            timeout: Duration::from_secs(u64::from(policy.hook_timeout_seconds)),
        })
    }

    /// The deploy calls for `node/service`, numbered from `next`.
    pub fn deploy_calls(
        &self,
        node: &str,
        service: &str,
        not_after: Option<String>,
        next: &mut u32,
    ) -> Vec<HookCall> {
        let reload = self.reload.get(service).map(|c| Program {
            source: "reload".to_string(),
            command: c.clone(),
            shell: true,
        });
        reload
            .iter()
            .chain(&self.deploy)
            .map(|p| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Deploy,
                    node: Some(node.to_string()),
                    service: Some(service.to_string()),
                    source: p.source.clone(),
                    command: p.command.clone(),
                    shell: p.shell,
                    not_after: not_after.clone(),
                }
            })
            .collect()
    }

    /// The post calls of a run, numbered from `next`.
    pub fn post_calls(&self, next: &mut u32) -> Vec<HookCall> {
        self.post
            .iter()
            .map(|p| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Post,
                    node: None,
                    service: None,
                    source: p.source.clone(),
                    command: p.command.clone(),
                    shell: p.shell,
                    not_after: None,
                }
            })
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The executables in `<root>/hooks/<kind>/`, in byte order of name (none if the folder is
/// absent). A file that is not executable is kept: it fails when run, naming itself.
fn folder(root: &Path, kind: &str) -> Result<Vec<Program>> {
    let dir = root.join("hooks").join(kind);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to list hooks in {}", dir.display()));
        }
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name())
        .filter(|n| !n.as_encoded_bytes().starts_with(b"."))
        .collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names
        .into_iter()
        .map(|n| Program {
            source: format!("hooks/{kind}/{}", n.to_string_lossy()),
            command: dir.join(&n).to_string_lossy().into_owned(),
            shell: false,
        })
        .collect())
}

/// Where a call runs and what it is told.
pub struct Context<'a> {
    pub root: &'a Path,
    pub run_id: &'a str,
    pub run_dir: &'a Path,
    /// For post hooks: the report's path and the counts.
    pub post_env: Vec<(String, String)>,
}

/// Runs one call to its end or its timeout; never fails: what went wrong is in the result.
pub fn run(call: &HookCall, ctx: &Context<'_>, timeout: Duration) -> HookResult {
    let logs = ctx.run_dir.join("hooks");
    let log = logs.join(format!("{}.log", call.call));
    let rel_log = log
        .strip_prefix(ctx.root)
        .unwrap_or(&log)
        .to_string_lossy()
        .into_owned();
    let result = |status, exit_code, detail: String| HookResult {
        source: call.source.clone(),
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
    let cwd = match (&call.node, &call.service) {
        (Some(node), Some(service)) => ctx.root.join("nodes").join(node).join(service),
        _ => ctx.root.to_path_buf(),
    };
    let mut command = if call.shell {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&call.command);
        c
    } else {
        let runnable =
            std::fs::metadata(&call.command).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        if !runnable {
            return result(
                HookStatus::Failed,
                None,
                format!("{} is not executable (chmod +x it)", call.command),
            );
        }
        Command::new(&call.command)
    };
    command
        .current_dir(&cwd)
        .envs(env(call, ctx, &cwd))
        .stdin(Stdio::null())
        .process_group(0);
    match spawn_capped(command, out, timeout) {
        Ok((Some(0), false)) => result(HookStatus::Ok, Some(0), String::new()),
        Ok((code, false)) => result(HookStatus::Failed, code, "exited with an error".to_string()),
        Ok((_, true)) => result(
            HookStatus::TimedOut,
            None,
            format!(
                "killed after {} s (hook_timeout_seconds)",
                timeout.as_secs()
            ),
        ),
        Err(e) => result(HookStatus::Failed, None, format!("cannot run: {e}")),
    }
}

fn env(call: &HookCall, ctx: &Context<'_>, dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![("REKEY_RUN_ID".to_string(), ctx.run_id.to_string())];
    if call.kind == HookKind::Deploy {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                path.to_string_lossy().into_owned()
            } else {
                String::new()
            }
        };
        env.extend([
            (
                "REKEY_NODE".to_string(),
                call.node.clone().unwrap_or_default(),
            ),
            (
                "REKEY_SERVICE".to_string(),
                call.service.clone().unwrap_or_default(),
            ),
            ("REKEY_DIR".to_string(), dir.to_string_lossy().into_owned()),
            ("REKEY_CERT".to_string(), file("cert.pem")),
            ("REKEY_KEY".to_string(), file("key.pem")),
            ("REKEY_TOKEN".to_string(), file("token.jwt")),
            (
                "REKEY_NOT_AFTER".to_string(),
                call.not_after.clone().unwrap_or_default(),
            ),
        ]);
    } else {
        env.extend(ctx.post_env.iter().cloned());
    }
    env
}

fn open_log(dir: &Path, log: &Path) -> Result<std::fs::File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log)
        .with_context(|| format!("failed to open {}", log.display()))
}

/// Spawns `command` with its output (stdout and stderr) going, capped, to `out`; waits for it
/// until `timeout`, then kills its whole process group. Returns (exit code, timed out).
fn spawn_capped(
    mut command: Command,
    out: std::fs::File,
    timeout: Duration,
) -> std::io::Result<(Option<i32>, bool)> {
    let (mut reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let mut child = command.spawn()?;
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
    // Its output ends when every process holding the pipe has; one left in the background is
    // not waited for long.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    Ok(match status {
        Some(status) => (status.code(), false),
        None => (None, true),
    })
}

/// Runs the pending hooks of every earlier run (those whose journal says they never ran or
/// failed), oldest run first; journals each success. Returns how each ended.
pub fn retry_pending(root: &Path, set: &HookSet) -> Result<Vec<super::report::RetriedHook>> {
    let runs = super::state::runs_dir(root);
    let mut out = Vec::new();
    for id in super::state::list_ids(&runs)? {
        let dir = runs.join(&id);
        let marker = dir.join(super::batches::HOOKS_PENDING);
        if !marker.exists() {
            continue;
        }
        let journal_path = dir.join("journal.jsonl");
        let pending = super::journal::pending_hooks(&super::journal::read(&journal_path)?);
        let mut journal = super::journal::Journal::open(&journal_path)?;
        let report = dir.join("report.json");
        let counts = super::state::read_report(&dir)
            .map(|r| r.counts)
            .unwrap_or_default();
        let ctx = Context {
            root,
            run_id: &id,
            run_dir: &dir,
            post_env: post_env(&report, &counts),
        };
        let mut all_ok = true;
        for call in &pending {
            let result = run(call, &ctx, set.timeout());
            let ok = result.status == HookStatus::Ok;
            all_ok &= ok;
            journal.append(&super::journal::Record::HookDone {
                call: call.call,
                ok,
            })?;
            let dir = call
                .node
                .as_ref()
                .zip(call.service.as_ref())
                .map(|(n, s)| format!("nodes/{n}/{s}"));
            eprintln!(
                "rekey: ran the pending hook {} of run {id}{}: {}",
                call.source,
                dir.as_deref()
                    .map(|d| format!(" for {d}"))
                    .unwrap_or_default(),
                if ok {
                    "ok"
                } else {
                    "failed again, still pending"
                }
            );
            out.push(super::report::RetriedHook {
                run_id: id.clone(),
                dir,
                result,
            });
        }
        if all_ok {
            std::fs::remove_file(&marker)
                .with_context(|| format!("failed to remove {}", marker.display()))?;
        }
    }
    Ok(out)
}

/// What a post hook is told besides the run id: the report's path and the counts.
pub fn post_env(report: &Path, counts: &super::report::Counts) -> Vec<(String, String)> {
    vec![
        (
            "REKEY_REPORT".to_string(),
            report.to_string_lossy().into_owned(),
        ),
        ("REKEY_DONE".to_string(), counts.done.to_string()),
        ("REKEY_SKIPPED".to_string(), counts.skipped.to_string()),
        ("REKEY_FAILED".to_string(), counts.failed.to_string()),
    ]
}
