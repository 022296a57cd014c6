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
//! Pending calls are listed, retried and discarded by `write::pending`, on the same floor as
//! this module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

mod process;

use super::record::calls::is_hook_name;
pub(crate) use super::record::calls::{HookCall, HookKind, HookResult, HookSource, HookStatus};
pub(crate) use process::private_file;
use process::run_program;
pub(crate) use process::{Context, Program};

use crate::digest::Digest;
use crate::names::IdentityId;

/// The hooks of a writing run, from the policy, the command line and the hooks folders, as
/// they are now: the only place a hook's command comes from.
#[derive(Debug, Clone, Default)]
pub(crate) struct HookSet {
    root: PathBuf,
    reload: std::collections::BTreeMap<String, String>,
    /// The policy's `ca_reload`, and whether this run calls it (a CA rotation stage that
    /// changes the bundle).
    ca_reload: Option<String>,
    calls_ca_reload: bool,
    deploy_args: Vec<String>,
    post_args: Vec<String>,
    deploy_folder: Vec<String>,
    post_folder: Vec<String>,
    timeout: Duration,
}

/// Why a call cannot run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unresolved {
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
    pub(crate) fn load(
        root: &Path,
        policy: &crate::policy::Policy,
        args: &HookArgs,
    ) -> Result<HookSet> {
        Ok(HookSet {
            root: root.to_path_buf(),
            reload: policy
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.reload.clone()?)))
                .collect(),
            ca_reload: policy.ca_reload.clone(),
            calls_ca_reload: false,
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

    /// The deploy calls for identity `id`, numbered from `next`.
    pub(crate) fn deploy_calls(
        &self,
        id: &IdentityId,
        not_after: Option<String>,
        next: &mut u32,
    ) -> Vec<HookCall> {
        let reload = self
            .reload
            .contains_key(id.service())
            .then_some(HookSource::Reload);
        reload
            .into_iter()
            .chain(self.sources(HookKind::Deploy))
            .map(|source| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Deploy,
                    id: Some(id.clone()),
                    source,
                    not_after: not_after.clone(),
                }
            })
            .collect()
    }

    /// This run changes `ca/bundle.pem`: the policy's `ca_reload` (if any) is its first post
    /// call.
    pub(crate) fn call_ca_reload(&mut self) {
        self.calls_ca_reload = true;
    }

    /// The post calls of a run, numbered from `next`.
    pub(crate) fn post_calls(&self, next: &mut u32) -> Vec<HookCall> {
        let ca_reload =
            (self.calls_ca_reload && self.ca_reload.is_some()).then_some(HookSource::CaReload);
        ca_reload
            .into_iter()
            .chain(self.sources(HookKind::Post))
            .map(|source| {
                *next += 1;
                HookCall {
                    call: *next,
                    kind: HookKind::Post,
                    id: None,
                    source,
                    not_after: None,
                }
            })
            .collect()
    }

    /// What `call` runs now: its source looked up in the configuration as it is now (the
    /// policy's current reload, the current executable of that name, a command-line hook of
    /// this command whose text has the digest journaled). Never anything the journal says.
    pub(crate) fn resolve(&self, call: &HookCall) -> Result<Program, Unresolved> {
        if call.kind == HookKind::Deploy {
            let Some(id) = &call.id else {
                return Err(Unresolved::Gone("it names no valid identity".to_string()));
            };
            let dir = id.dir_in(&self.root);
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Err(Unresolved::Gone(format!(
                    "its identity {} no longer exists",
                    id.relative().display()
                )));
            }
        }
        match &call.source {
            HookSource::Reload => {
                let service = call.id.as_ref().map_or("", IdentityId::service);
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
            HookSource::CaReload => match self
                .ca_reload
                .as_ref()
                .filter(|_| call.kind == HookKind::Post)
            {
                Some(command) => Ok(Program::Shell(command.clone())),
                None => Err(Unresolved::Gone(
                    "the policy has no ca_reload any more".to_string(),
                )),
            },
            HookSource::Unknown(label) => Err(Unresolved::Gone(format!(
                "its source {label:?} is not one rekey knows"
            ))),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
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

/// Resolves `call` in `set` and runs it to its end or its timeout; never fails: what went
/// wrong is in the result. A call whose source is gone fails here (the caller that retries
/// pending calls resolves first, and drops those).
///
/// A deploy hook runs in its identity's directory, opened beneath the root without following a
/// link; when `dir` names the directory the run wrote in (device and inode), one found at the
/// identity's name that is not it (moved away, a link or another directory put there) means the
/// hook is not run: the paths it is given would lead elsewhere.
pub(crate) fn run(
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

/// What a post hook is told besides the run id: the report's path and the counts.
pub(crate) fn post_env(
    report: &Path,
    counts: &super::record::run_report::Counts,
) -> Vec<(String, String)> {
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
