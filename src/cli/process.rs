//! The process rekey runs in, as the binary sets it up before anything else (allocator arenas,
//! umask) and as it reads a failure to write its output (a closed pipe). No argument, no
//! fleet: what any subcommand's process needs.

/// Sets the process up, before any thread exists: the allocator's arenas, the umask.
pub fn prepare() {
    limit_malloc_arenas();
    no_writable_by_others();
}

/// glibc gives a thread that finds the allocator busy an arena of its own, up to eight per core,
/// and each arena keeps what it once held: the survey's 32 workers would make memory grow with
/// the length of a run, not with the work in flight (docs/design.md §7). One arena per core is
/// as fast here, since only that many threads run at once.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tunable of glibc's allocator; called before any thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
}

/// Nothing rekey creates may be writable by its group or by others, whatever umask it was
/// started with (`umask 000` made the demo's directories 0777): the umask is narrowed, never
/// widened. Every file rekey writes also gets an explicit mode (docs/design.md §8).
fn no_writable_by_others() {
    // SAFETY: umask cannot fail; called before any thread exists.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old | 0o022);
    }
}

/// Whether `err` comes from writing to a pipe whose reader is gone (`rekey status | head`):
/// the reader has what it wanted, so the process ends quietly with status 0.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
