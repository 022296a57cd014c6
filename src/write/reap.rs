//! Every process a hook started ends with the hook. rekey makes itself a child subreaper
//! (`prctl(PR_SET_CHILD_SUBREAPER)`), so that what a hook leaves behind — even after `setsid`,
//! in a session and process group of its own — is reparented to rekey rather than to init.
//! Each hook is spawned with `REKEY_HOOK_CALL=<run>:<call>` in its environment; while it runs,
//! its process tree is walked every poll tick (`/proc/<pid>/task/*/children`). When it ends
//! (normally or at its timeout), [`Tracker::kill_all`] kills every process that is still ours
//! and is its: below its pid, seen in its tree, or carrying its marker and descended from rekey.
//! The hooks of other identities, running in parallel, are never touched; and nothing here waits
//! for any process but one that is rekey's own child, attributed to this hook, already dead, and
//! not the main process of a hook in flight (whose `Child` waits for it): never `waitpid(-1)`.
//! [`sweep`] is the backstop once no hook runs: every descendant left is killed and reaped.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The environment variable that marks every process of one hook call.
pub(crate) const MARKER: &str = "REKEY_HOOK_CALL";

/// The main processes of the hooks in flight (pid → how many `Child`ren hold it), which only
/// their `Child` may wait for. Held while spawning and while reaping, so neither races the other.
static LIVE: Mutex<BTreeMap<i32, usize>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<i32, usize>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes rekey the reaper of its orphaned descendants (once per process).
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if done != 0 {
            eprintln!(
                "rekey: warning: cannot become the reaper of hooks' processes ({}): a hook that \
                 leaves its session may outlive it",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Spawns a hook's main process, marked `REKEY_HOOK_CALL=marker`, and starts tracking it.
pub(crate) fn spawn(command: &mut Command, marker: &str) -> std::io::Result<(Child, Tracker)> {
    become_subreaper();
    command.env(MARKER, marker);
    let mut live = live();
    let child = command.spawn()?;
    let pid = child.id() as i32;
    *live.entry(pid).or_default() += 1;
    drop(live);
    let mut tracker = Tracker {
        pid,
        marker: format!("{MARKER}={marker}").into_bytes(),
        seen: BTreeMap::new(),
    };
    tracker.tick();
    Ok((child, tracker))
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    ppid: i32,
    /// When it started (clock ticks since boot): with the pid, names one process for good.
    start: u64,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat` (pure): the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Proc> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        zombie: matches!(*fields.first()?, "Z" | "X"),
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process of the system (one reading of /proc).
fn all() -> BTreeMap<i32, Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The direct children of `pid` (of each of its threads).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether `pid`'s parents lead to `ancestor`.
fn descends_from(procs: &BTreeMap<i32, Proc>, mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..procs.len() {
        match procs.get(&pid) {
            Some(p) if p.ppid == ancestor => return true,
            Some(p) if p.ppid > 1 => pid = p.ppid,
            _ => return false,
        }
    }
    false
}

fn has_marker(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
}

/// Sends SIGKILL to the process `pid` that started at `start`, and to no other: through a
/// pidfd, so that a pid reused meanwhile is never signalled.
fn kill(pid: i32, start: u64) {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
            && stat(pid).is_some_and(|p| p.start == start)
        {
            // SAFETY: signalling one process; a kernel without pidfds leaves this small race.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        return;
    }
    // SAFETY: fd is the descriptor pidfd_open just returned, owned here alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if stat(pid).is_some_and(|p| p.start == start) {
        use std::os::fd::AsRawFd;
        // SAFETY: signalling the process the pidfd refers to, checked to be the one meant.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// Waits for `pid` if it is rekey's own dead child, started at `start`, and no hook's main
/// process: a specific pid, never any child.
fn reap(pid: i32, start: u64, me: i32) {
    let live = live();
    if live.contains_key(&pid) {
        return;
    }
    if stat(pid).is_some_and(|p| p.ppid == me && p.zombie && p.start == start) {
        let mut status = 0;
        // SAFETY: waiting for one dead child of this process, which nothing else waits for.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}

/// The processes of one hook call.
pub(crate) struct Tracker {
    pid: i32,
    marker: Vec<u8>,
    /// Every process seen in its tree: pid → start.
    seen: BTreeMap<i32, u64>,
}

impl Tracker {
    /// Notes the processes below the hook's main process now (once per poll tick).
    pub(crate) fn tick(&mut self) {
        let mut todo = children(self.pid);
        while let Some(pid) = todo.pop() {
            if self.seen.len() > 100_000 {
                break;
            }
            if let Some(p) = stat(pid)
                && self.seen.insert(pid, p.start).is_none()
            {
                todo.extend(children(pid));
            }
        }
    }

    /// Kills every process of this hook still there (its main process has ended and been
    /// waited for, or is being killed with its group) and reaps those that became rekey's
    /// children. Returns how many it killed.
    pub(crate) fn kill_all(&mut self) -> usize {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let mut killed: BTreeMap<i32, u64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = all();
            let others: BTreeSet<i32> = live().keys().copied().filter(|p| *p != self.pid).collect();
            let ours: Vec<(i32, Proc)> = procs
                .iter()
                .filter(|(pid, _)| **pid != me && **pid != self.pid && !others.contains(pid))
                .filter(|(pid, _)| descends_from(&procs, **pid, me))
                .filter(|(pid, p)| {
                    self.seen.get(pid) == Some(&p.start)
                        || killed.get(pid) == Some(&p.start)
                        || descends_from(&procs, **pid, self.pid)
                        || has_marker(**pid, &self.marker)
                })
                .filter(|(pid, _)| !others.iter().any(|o| descends_from(&procs, **pid, *o)))
                .map(|(pid, p)| (*pid, *p))
                .collect();
            let running: Vec<&(i32, Proc)> = ours.iter().filter(|(_, p)| !p.zombie).collect();
            for (pid, p) in &running {
                kill(*pid, p.start);
                killed.insert(*pid, p.start);
            }
            for (pid, p) in &ours {
                if p.ppid == me {
                    reap(*pid, p.start, me);
                }
            }
            // A dead process that is not rekey's child is its parent's to reap (or the sweep's).
            if running.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        killed.len()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(n) = live.get_mut(&self.pid) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.pid);
            }
        }
    }
}

/// Kills and reaps every descendant of rekey still there, once no hook runs (after a batch's
/// deploy hooks, the post hooks, the retried hooks): what a hook left that could not be told
/// apart from another's while they ran in parallel. Returns how many it killed.
pub(crate) fn sweep() -> usize {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = all();
        if !live().is_empty() {
            return killed.len(); // a hook is running: not the time
        }
        let ours: Vec<(i32, Proc)> = procs
            .iter()
            .filter(|(pid, _)| **pid != me && descends_from(&procs, **pid, me))
            .map(|(pid, p)| (*pid, *p))
            .collect();
        for (pid, p) in &ours {
            if p.zombie {
                if p.ppid == me {
                    reap(*pid, p.start, me);
                }
            } else {
                kill(*pid, p.start);
                killed.insert((*pid, p.start));
            }
        }
        if ours.is_empty() || Instant::now() >= deadline {
            return killed.len();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_from_the_last_parenthesis() {
        let line = |comm: &str, state: &str| {
            format!(
                "4242 ({comm}) {state} 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0"
            )
        };
        let cases = [
            ("plain", line("sleep", "S"), Some((17, 98765, false))),
            ("zombie", line("sh", "Z"), Some((17, 98765, true))),
            (
                "spaces and parentheses in the name",
                line("a) b (c", "R"),
                Some((17, 98765, false)),
            ),
            ("cut short", "4242 (sleep) S 17".to_string(), None),
            ("no name", "garbage".to_string(), None),
        ];
        for (name, text, want) in cases {
            let got = parse_stat(&text).map(|p| (p.ppid, p.start, p.zombie));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn descent_follows_parents_and_stops_at_init() {
        let p = |ppid| Proc {
            ppid,
            start: 1,
            zombie: false,
        };
        let procs: BTreeMap<i32, Proc> = [(10, p(1)), (20, p(10)), (30, p(20)), (40, p(1))].into();
        assert!(descends_from(&procs, 30, 10));
        assert!(descends_from(&procs, 20, 10));
        assert!(!descends_from(&procs, 40, 10));
        assert!(!descends_from(&procs, 10, 10), "not its own descendant");
        assert!(!descends_from(&procs, 99, 10), "unknown");
    }
}
