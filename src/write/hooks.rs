//! Hooks: what reloads a service once its new credentials are in place. Deploy hooks run once
//! per rotated (or restored) identity after its batch commits; post hooks once per run that
//! changed something. Sources, in order: the policy's `[services.NAME] reload`, `--deploy-hook` /
//! `--post-hook`, and the executables in `<root>/hooks/deploy/` and `<root>/hooks/post/` (byte
//! order of name).
//!
//! A hook is never lost: every call is journaled (`hooks`) before the batch's files are renamed,
//! and each attempt (`hook_done`) after it ran. The journal names *which* hook a call is (a
//! [`HookSource`]), never a command line: what runs is resolved from the configuration as it is
//! when the call runs ([`HookSet::resolve`]), so a journal (planted, or from before a change to
//! the policy) can never make rekey run a command. Each hook runs through `sh -c` (or directly,
//! from the hooks folders) in the identity's directory, in its own process group; it and every
//! process it started are killed at the timeout, and whatever it left running when it ended is
//! killed too ([`super::reap`]); its output is kept, capped, in the run's directory (0600).
//! Pending calls are listed, retried and discarded in [`super::pending`].

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// How much of a hook's output is kept.
pub const OUTPUT_CAP: u64 = 64 * 1024;

/// One hook to run, as journaled: *which* hook, never its command line. What runs is resolved
/// from the trusted configuration when the call runs ([`HookSet::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawCall", into = "RawCall")]
pub struct HookCall {
    /// Unique within its run.
    pub call: u32,
    /// `deploy` (per identity) or `post` (per run).
    pub kind: HookKind,
    pub node: Option<String>,
    pub service: Option<String>,
    pub source: HookSource,
    /// The new credentials' expiry (deploy hooks).
    pub not_after: Option<String>,
}

/// Where a hook comes from. Its label is the report's `source`: `reload`, `--deploy-hook`,
/// `--post-hook`, `hooks/deploy/NAME`, `hooks/post/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSource {
    /// The policy's `reload` of the call's service.
    Reload,
    /// The executable `hooks/<kind>/<name>`.
    Folder { kind: HookKind, name: String },
    /// A `--deploy-hook` / `--post-hook`: the SHA-256 of its text and its place among them.
    CommandLine {
        kind: HookKind,
        sha256: Digest,
        position: u32,
    },
    /// A label no release of rekey writes (a damaged or planted journal): never runs.
    Unknown(String),
}

impl HookSource {
    /// The report's `source` string.
    pub fn label(&self) -> String {
        match self {
            HookSource::Reload => "reload".to_string(),
            HookSource::Folder { kind, name } => format!("hooks/{}/{name}", kind.as_str()),
            HookSource::CommandLine { kind, .. } => format!("--{}-hook", kind.as_str()),
            HookSource::Unknown(label) => label.clone(),
        }
    }

    /// The source a journal's label (and, for a command-line hook, digest) names. The previous
    /// release journaled the command text instead of its digest: only its digest is kept.
    fn parse(label: &str, sha256: Option<Digest>, legacy: Option<&str>, position: u32) -> Self {
        let cli = |kind| match sha256.or(legacy.map(|c| Digest::of(c.as_bytes()))) {
            Some(sha256) => HookSource::CommandLine {
                kind,
                sha256,
                position,
            },
            None => HookSource::Unknown(label.to_string()),
        };
        let folder = |kind, name: &str| {
            if is_hook_name(name) {
                HookSource::Folder {
                    kind,
                    name: name.to_string(),
                }
            } else {
                HookSource::Unknown(label.to_string())
            }
        };
        match label {
            "reload" => HookSource::Reload,
            "--deploy-hook" => cli(HookKind::Deploy),
            "--post-hook" => cli(HookKind::Post),
            _ => match (
                label.strip_prefix("hooks/deploy/"),
                label.strip_prefix("hooks/post/"),
            ) {
                (Some(name), _) => folder(HookKind::Deploy, name),
                (_, Some(name)) => folder(HookKind::Post, name),
                _ => HookSource::Unknown(label.to_string()),
            },
        }
    }
}

impl std::fmt::Display for HookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A file name in a hooks folder that rekey runs: not hidden, no path in it.
fn is_hook_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0'])
}

/// A hook call as a journal line holds it. `command` and `shell` are the previous release's
/// command line: read (a journal it wrote must replay), never kept, never run.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    call: u32,
    kind: HookKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(default, skip_serializing)]
    command: Option<String>,
    #[serde(default, skip_serializing)]
    #[expect(dead_code, reason = "accepted so that old journals read; never used")]
    shell: Option<serde::de::IgnoredAny>,
}

impl From<RawCall> for HookCall {
    fn from(raw: RawCall) -> HookCall {
        let position = raw.position.unwrap_or(0);
        let source = HookSource::parse(
            &raw.source,
            raw.command_sha256,
            raw.command.as_deref(),
            position,
        );
        HookCall {
            call: raw.call,
            kind: raw.kind,
            node: raw.node,
            service: raw.service,
            source,
            not_after: raw.not_after,
        }
    }
}

impl From<HookCall> for RawCall {
    fn from(call: HookCall) -> RawCall {
        let (command_sha256, position) = match &call.source {
            HookSource::CommandLine {
                sha256, position, ..
            } => (Some(*sha256), Some(*position)),
            _ => (None, None),
        };
        RawCall {
            call: call.call,
            kind: call.kind,
            node: call.node,
            service: call.service,
            source: call.source.label(),
            command_sha256,
            position,
            not_after: call.not_after,
            command: None,
            shell: None,
        }
    }
}

impl HookCall {
    /// `nodes/<node>/<service>` for a deploy call.
    pub fn identity(&self) -> Option<String> {
        self.node
            .as_ref()
            .zip(self.service.as_ref())
            .map(|(n, s)| format!("nodes/{n}/{s}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Deploy,
    Post,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Deploy => "deploy",
            HookKind::Post => "post",
        }
    }
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

/// The hooks of a writing run, from the policy, the command line and the hooks folders, as
/// they are now: the only place a hook's command comes from.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    root: PathBuf,
    reload: std::collections::BTreeMap<String, String>,
    deploy_args: Vec<String>,
    post_args: Vec<String>,
    deploy_folder: Vec<String>,
    post_folder: Vec<String>,
    timeout: Duration,
}

/// What runs for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Through `sh -c`.
    Shell(String),
    /// An executable of a hooks folder.
    Exec(PathBuf),
}

/// Why a call cannot run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Its source (or its identity) is gone: it never will.
    Gone(String),
    /// A command-line hook that this command line does not give again: it stays pending.
    NotGiven(String),
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
        Ok(HookSet {
            root: root.to_path_buf(),
            reload: policy
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.reload.clone()?)))
                .collect(),
            deploy_args: args.deploy.clone(),
            post_args: args.post.clone(),
            deploy_folder: folder(root, HookKind::Deploy)?,
            post_folder: folder(root, HookKind::Post)?,
            timeout: Duration::from_secs(u64::from(policy.hook_timeout_seconds)),
        })
    }

    /// The sources of `kind`'s calls, in order: (reload), command line, folder.
    fn sources(&self, kind: HookKind) -> Vec<HookSource> {
        let (args, names) = match kind {
            HookKind::Deploy => (&self.deploy_args, &self.deploy_folder),
            HookKind::Post => (&self.post_args, &self.post_folder),
        };
        let cli = args
            .iter()
            .zip(0..)
            .map(|(text, position)| HookSource::CommandLine {
                kind,
                sha256: Digest::of(text.as_bytes()),
                position,
            });
        let folder = names.iter().map(|name| HookSource::Folder {
            kind,
            name: name.clone(),
        });
        cli.chain(folder).collect()
    }

    /// The deploy calls for `node/service`, numbered from `next`.
    pub fn deploy_calls(
        &self,
        node: &str,
        service: &str,
        not_after: Option<String>,
        next: &mut u32,
    ) -> Vec<HookCall> {
        let reload = self
            .reload
            .contains_key(service)
            .then_some(HookSource::Reload);
        reload
            .into_iter()
            .chain(self.sources(HookKind::Deploy))
            .map(|source| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Deploy,
                    node: Some(node.to_string()),
                    service: Some(service.to_string()),
                    source,
                    not_after: not_after.clone(),
                }
            })
            .collect()
    }

    /// The post calls of a run, numbered from `next`.
    pub fn post_calls(&self, next: &mut u32) -> Vec<HookCall> {
        self.sources(HookKind::Post)
            .into_iter()
            .map(|source| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Post,
                    node: None,
                    service: None,
                    source,
                    not_after: None,
                }
            })
            .collect()
    }

    /// What `call` runs now: its source looked up in the configuration as it is now (the
    /// policy's current reload, the current executable of that name, a command-line hook of
    /// this command whose text has the digest journaled). Never anything the journal says.
    pub fn resolve(&self, call: &HookCall) -> Result<Program, Unresolved> {
        if call.kind == HookKind::Deploy {
            let id = call
                .node
                .as_deref()
                .zip(call.service.as_deref())
                .and_then(|(n, s)| crate::names::IdentityId::new(n, s));
            let Some(id) = id else {
                return Err(Unresolved::Gone("it names no valid identity".to_string()));
            };
            let dir = self.root.join("nodes").join(id.node()).join(id.service());
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Err(Unresolved::Gone(format!(
                    "its identity nodes/{}/{} no longer exists",
                    id.node(),
                    id.service()
                )));
            }
        }
        match &call.source {
            HookSource::Reload => {
                let service = call.service.as_deref().unwrap_or_default();
                match self
                    .reload
                    .get(service)
                    .filter(|_| call.kind == HookKind::Deploy)
                {
                    Some(command) => Ok(Program::Shell(command.clone())),
                    None => Err(Unresolved::Gone(format!(
                        "the policy has no reload for service {service} any more"
                    ))),
                }
            }
            HookSource::Folder { kind, name } => {
                let names = match kind {
                    HookKind::Deploy => &self.deploy_folder,
                    HookKind::Post => &self.post_folder,
                };
                if *kind == call.kind && names.contains(name) {
                    Ok(Program::Exec(
                        self.root.join("hooks").join(kind.as_str()).join(name),
                    ))
                } else {
                    Err(Unresolved::Gone(format!(
                        "hooks/{}/{name} no longer exists",
                        kind.as_str()
                    )))
                }
            }
            HookSource::CommandLine { kind, sha256, .. } => {
                let args = match kind {
                    HookKind::Deploy => &self.deploy_args,
                    HookKind::Post => &self.post_args,
                };
                args.iter()
                    .find(|text| Digest::of(text.as_bytes()) == *sha256 && *kind == call.kind)
                    .map(|text| Program::Shell(text.clone()))
                    .ok_or_else(|| {
                        Unresolved::NotGiven(format!(
                            "a --{0}-hook the command line did not give again: give the same \
                             --{0}-hook again to `rekey hooks retry`, or discard it (`rekey hooks \
                             discard RUN_ID:CALL`)",
                            kind.as_str()
                        ))
                    })
            }
            HookSource::Unknown(label) => Err(Unresolved::Gone(format!(
                "its source {label:?} is not one rekey knows"
            ))),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The executables' names in `<root>/hooks/<kind>/`, in byte order (none if the folder is
/// absent). A file that is not executable is kept: it fails when run, naming itself.
fn folder(root: &Path, kind: HookKind) -> Result<Vec<String>> {
    let dir = root.join("hooks").join(kind.as_str());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to list hooks in {}", dir.display()));
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_hook_name(n))
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Where a call runs and what it is told.
pub struct Context<'a> {
    pub root: &'a Path,
    /// The fleet root, open: a deploy hook runs in its identity's directory, opened beneath it
    /// without following a link (docs/design.md §8).
    pub fleet: &'a crate::fsio::RootDir,
    pub run_id: &'a str,
    pub run_dir: &'a Path,
    /// For post hooks: the report's path and the counts.
    pub post_env: Vec<(String, String)>,
}

/// Resolves `call` in `set` and runs it to its end or its timeout; never fails: what went
/// wrong is in the result. A call whose source is gone fails here (the caller that retries
/// pending calls resolves first, and drops those).
///
/// A deploy hook runs in its identity's directory, opened beneath the root without following a
/// link; when `dir` names the directory the run wrote in (device and inode), one found at the
/// identity's name that is not it (moved away, a link or another directory put there) means the
/// hook is not run: the paths it is given would lead elsewhere.
pub fn run(
    call: &HookCall,
    set: &HookSet,
    ctx: &Context<'_>,
    dir: Option<crate::fsio::FileId>,
) -> HookResult {
    let program = match set.resolve(call) {
        Ok(program) => program,
        Err(Unresolved::Gone(why) | Unresolved::NotGiven(why)) => {
            return HookResult {
                source: call.source.label(),
                status: HookStatus::Failed,
                exit_code: None,
                detail: format!("cannot run: {why}"),
                log: String::new(),
            };
        }
    };
    run_program(call, &program, ctx, set.timeout(), dir)
}

fn run_program(
    call: &HookCall,
    program: &Program,
    ctx: &Context<'_>,
    timeout: Duration,
    written_in: Option<crate::fsio::FileId>,
) -> HookResult {
    let logs = ctx.run_dir.join("hooks");
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
    let dir = match (&call.node, &call.service) {
        (Some(node), Some(service)) => match ctx.fleet.identity(node, service) {
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
        _ => None,
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
                call.node.clone().unwrap_or_default(),
            ),
            (
                "REKEY_SERVICE".to_string(),
                call.service.clone().unwrap_or_default(),
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
    // Exactly 0700 and 0600, whatever the umask took away or an earlier release left.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to restrict {}", dir.display()))?;
    private_file(std::fs::OpenOptions::new().append(true).create(true), log)
}

/// Opens (creating if need be) a file of rekey's own state as 0600 exactly, never through a
/// link.
pub fn private_file(options: &mut std::fs::OpenOptions, path: &Path) -> Result<std::fs::File> {
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
    let (mut child, mut tracker) = super::reap::spawn(&mut command, marker)?;
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
