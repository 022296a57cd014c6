//! Judging a fleet as a stream (docs/design.md §7): identities come out in (node, service) order
//! while the next ones are still being read, and at most a [`Window`] of them are held at any
//! moment, whatever the size of the fleet.
//!
//! Three stages run at once:
//! - a lister lists node directories one at a time, a node ahead of the feeder;
//! - a feeder numbers their service directories and hands them out in batches of [`BATCH`],
//!   admitting one only when fewer than the window's identities are between it and the oldest
//!   not yet taken by the consumer;
//! - workers ([`WORKERS`], twice that for a reader) each read a batch's files and judge them,
//!   a worker replaced by a fresh one after [`GENERATION`] batches. Reading is I/O: on a cold
//!   page cache a worker waits on the disk while others check what has arrived, so a cold run
//!   costs about the larger of reading and checking, not their sum; on a warm one they share
//!   the cores.
//!
//! The consumer (a renderer, on the calling thread) takes them back in order through a reorder
//! window. Batches keep the hand-offs (and the threads woken for them) few. Nothing here
//! judges: [`inspect`](crate::inspect), [`classify`](crate::classify) and [`super::assess`] do;
//! this module only moves identities between them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::identity::{Identity, assess};
use super::scope::Scope;
use crate::inspect;
use crate::scan::{self, Candidate, Files, Issue, Nodes};

/// How many identities may be between the lister and the consumer at once: read, being read,
/// being checked or waiting for an older one. Bounds the memory of a survey (a few KiB each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// 1,024, judged by twice [`WORKERS`]: a reader's consumer (a renderer) takes each identity
    /// as it comes, and a wide window lets the workers run ahead of one slow read on a cold
    /// disk, more of them waiting on it at once (a cold `status` of 10,000 identities: 1.00 s
    /// with 16, 0.88 s with 32; a little more memory, a worker's buffers).
    Reading,
    /// 256, judged by [`WORKERS`] (every worker's batch once): a writing run takes identities a
    /// journal batch at a time and holds two batches of new files beside the window, so
    /// read-ahead past what the workers judge at once would only be memory.
    Writing,
}

impl Window {
    fn identities(self) -> usize {
        match self {
            Window::Reading => 1024,
            Window::Writing => WORKERS * BATCH,
        }
    }

    fn workers(self) -> usize {
        match self {
            Window::Reading => 2 * WORKERS,
            Window::Writing => WORKERS,
        }
    }
}

/// Threads that read and judge for a writing run (a reading one has twice as many). On a cold
/// page cache each read waits on the disk, and many waiting at once keep the disk's queue full
/// while the cores check.
pub(crate) const WORKERS: usize = 16;

/// Identities handed to a worker, and back to the consumer, at a time.
pub(crate) const BATCH: usize = 16;

/// Batches a worker takes before it ends and a new one takes its place (see [`each`]).
const GENERATION: usize = 20;

/// What the listing found besides identities: issues in the order found and hidden entries.
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub(crate) issues: Vec<Issue>,
    pub(crate) hidden: usize,
}

/// One identity judged: an identity, or the issue it is (a link, an empty directory).
type Verdict = Result<Identity, Issue>;

/// Admits identities into the window: the feeder waits while the window's identities are out.
struct Gate {
    in_flight: usize,
    /// (identities taken by the consumer, whether the consumer has gone)
    state: Mutex<(usize, bool)>,
    moved: Condvar,
}

impl Gate {
    fn new(window: Window) -> Gate {
        Gate {
            in_flight: window.identities(),
            state: Mutex::default(),
            moved: Condvar::new(),
        }
    }

    /// Waits until identity `seq` may enter the window; false when the consumer has gone.
    fn admit(&self, seq: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.1 && seq >= state.0 + self.in_flight {
            state = self
                .moved
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.1
    }

    fn taken(&self, count: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = count;
        self.moved.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.moved.notify_all();
    }
}

/// The consumer's end of the stream: an iterator over the judged identities in (node, service)
/// order. When it is exhausted, [`Flow::listed`] has everything the listing found.
pub(crate) struct Flow {
    done: Receiver<Vec<(usize, Verdict)>>,
    waiting: BTreeMap<usize, Verdict>,
    next: usize,
    gate: Arc<Gate>,
    /// Filled by the lister; `admitted` is set by the feeder when it has admitted every
    /// identity (and so is the number of identities to expect).
    listing: Arc<Mutex<Listing>>,
    issues: Vec<Issue>,
    finished: bool,
}

#[derive(Default)]
struct Listing {
    listed: Listed,
    admitted: Option<usize>,
}

impl Iterator for Flow {
    type Item = Identity;

    fn next(&mut self) -> Option<Identity> {
        loop {
            if let Some(verdict) = self.waiting.remove(&self.next) {
                self.next += 1;
                if self.next.is_multiple_of(BATCH) {
                    self.gate.taken(self.next);
                }
                match verdict {
                    Ok(identity) => return Some(identity),
                    Err(issue) => {
                        self.issues.push(issue);
                        continue;
                    }
                }
            }
            if self.finished {
                return None;
            }
            match self.done.recv() {
                Ok(batch) => self.waiting.extend(batch),
                Err(_) => {
                    // Every stage has ended: each identity admitted must have come back, or
                    // a report would silently leave some out.
                    let admitted = self.lock().admitted;
                    assert!(
                        self.waiting.is_empty() && admitted == Some(self.next),
                        "a stage of the survey ended early ({} of {admitted:?} identities judged)",
                        self.next
                    );
                    self.finished = true;
                    return None;
                }
            }
        }
    }
}

impl Flow {
    fn lock(&self) -> std::sync::MutexGuard<'_, Listing> {
        self.listing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the listing found besides identities, once the stream is exhausted: the listing's
    /// issues first, then those of the service directories that were not identities.
    pub(crate) fn listed(&mut self) -> Listed {
        debug_assert!(self.finished, "the stream is exhausted first");
        let mut listed = std::mem::take(&mut self.lock().listed);
        listed.issues.append(&mut self.issues);
        listed
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        // A consumer that stops early (its output failed) stops every stage.
        self.gate.close();
    }
}

/// Judges the identities under `nodes` that `wanted` names (by node and service), handing the
/// stream to `consume` on this thread; the others are listed (their hidden entries and listing
/// issues are counted) but never read, and at most `window` are judged ahead of `consume`.
/// `nodes`' own issues and hidden entries come first in [`Flow::listed`].
pub(crate) fn each<R>(
    scope: &Scope,
    nodes: Nodes,
    wanted: &(dyn Fn(&str, &str) -> bool + Sync),
    window: Window,
    consume: impl FnOnce(&mut Flow) -> R,
) -> R {
    let Nodes {
        nodes,
        issues,
        hidden,
    } = nodes;
    let listing = Arc::new(Mutex::new(Listing {
        listed: Listed { issues, hidden },
        admitted: None,
    }));
    let gate = Arc::new(Gate::new(window));
    let stop = AtomicBool::new(false);
    let root = &scope.root;
    let ctx = scope.context();
    std::thread::scope(|s| {
        let (to_feed, feed) = sync_channel::<scan::Services>(1);
        let (to_work, work) = sync_channel::<Vec<(usize, Candidate)>>(window.identities() / BATCH);
        let (to_done, done) = channel::<Vec<(usize, Verdict)>>();
        let work = Arc::new(Mutex::new(work));
        let stop = &stop;
        // The lister: one node ahead of the feeder.
        {
            let listing = Arc::clone(&listing);
            s.spawn(move || {
                for node in &nodes {
                    let mut services = scan::services(root, node);
                    {
                        let mut l = listing.lock().unwrap_or_else(PoisonError::into_inner);
                        l.listed.issues.append(&mut services.issues);
                        l.listed.hidden += services.hidden;
                    }
                    if stop.load(Ordering::Relaxed) || to_feed.send(services).is_err() {
                        return;
                    }
                }
            });
        }
        // The feeder: numbers the candidates and admits them into the window, a batch at a time.
        {
            let (gate, listing) = (Arc::clone(&gate), Arc::clone(&listing));
            s.spawn(move || {
                let mut seq = 0;
                let mut batch = Vec::with_capacity(BATCH);
                let send = |batch: &mut Vec<(usize, Candidate)>, seq: usize| {
                    let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                    gate.admit(seq) && to_work.send(full).is_ok()
                };
                for services in feed {
                    let candidates = services.candidates.into_iter();
                    for candidate in candidates.filter(|c| wanted(c.id.node(), c.id.service())) {
                        batch.push((seq, candidate));
                        seq += 1;
                        if batch.len() == BATCH && !send(&mut batch, seq - 1) {
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
                if !batch.is_empty() && !send(&mut batch, seq - 1) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                listing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admitted = Some(seq);
            });
        }
        // The workers: each takes up to GENERATION batches, then ends and another takes its
        // place at once, never waiting for the others (a generation that ended together would
        // leave the disk one slow read's worth of workers at each turn). glibc keeps freed
        // memory per thread (its tcache, up to a few hundred KiB each), which a thread that
        // lives the whole run fills as the run goes on: memory would grow with the fleet. A
        // thread's end gives it back.
        {
            let (ctx, gate) = (&ctx, &gate);
            s.spawn(move || {
                std::thread::scope(|g| {
                    let (ended, turns) = channel::<bool>();
                    let start = || {
                        let (work, to_done, ended, gate) =
                            (Arc::clone(&work), to_done.clone(), ended.clone(), gate);
                        g.spawn(move || {
                            // Says whether the worker reached its quota (more work may be
                            // left); a worker that panics stops the stream, so that every
                            // thread ends and the scope carries the panic on.
                            let mut turn = Turn {
                                ended,
                                more: false,
                                stop,
                                gate,
                            };
                            turn.more = work_a_generation(&work, &to_done, stop, |batch| {
                                judge_batch(scope, ctx, batch)
                            });
                        });
                    };
                    for _ in 0..window.workers() {
                        start();
                    }
                    let mut running = window.workers();
                    while running > 0 {
                        let more = turns.recv().unwrap_or(false);
                        running -= 1;
                        if more && !stop.load(Ordering::Relaxed) {
                            start();
                            running += 1;
                        }
                    }
                });
            });
        }
        let mut flow = Flow {
            done,
            waiting: BTreeMap::new(),
            next: 0,
            gate: Arc::clone(&gate),
            listing: Arc::clone(&listing),
            issues: Vec::new(),
            finished: false,
        };
        let result = consume(&mut flow);
        stop.store(true, Ordering::Relaxed);
        drop(flow);
        result
    })
}

/// A worker's end, told to the thread that replaces workers (see [`each`]) when it is dropped.
/// A worker that panics never hands its batch on, which the consumer would wait for, and the
/// feeder with it: it stops the stream and opens the gate, so that every thread ends.
struct Turn<'a> {
    ended: std::sync::mpsc::Sender<bool>,
    more: bool,
    stop: &'a AtomicBool,
    gate: &'a Gate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stop.store(true, Ordering::Relaxed);
            self.gate.close();
        }
        let _ = self.ended.send(self.more);
    }
}

/// One worker's life: up to GENERATION batches taken from `work`, each judged by `judge` and
/// sent to `to_done`. Returns whether it reached its quota (there may be more work).
fn work_a_generation(
    work: &Mutex<Receiver<Vec<(usize, Candidate)>>>,
    to_done: &std::sync::mpsc::Sender<Vec<(usize, Verdict)>>,
    stop: &AtomicBool,
    judge: impl Fn(Vec<(usize, Candidate)>) -> Vec<(usize, Verdict)>,
) -> bool {
    for _ in 0..GENERATION {
        let Some(batch) = take(work) else {
            return false;
        };
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if to_done.send(judge(batch)).is_err() {
            stop.store(true, Ordering::Relaxed);
            return false;
        }
    }
    true
}

/// One batch read whole, then judged whole: the kernel's reading code and the checks' code
/// each stay in the core's caches for a batch at a time.
fn judge_batch(
    scope: &Scope,
    ctx: &crate::classify::Context<'_>,
    batch: Vec<(usize, Candidate)>,
) -> Vec<(usize, Verdict)> {
    let read: Vec<_> = batch
        .into_iter()
        .map(|(seq, candidate)| {
            let files = (!candidate.is_link).then(|| scan::read(&candidate));
            (seq, candidate, files)
        })
        .collect();
    read.into_iter()
        .map(|(seq, candidate, files)| (seq, judge(scope, ctx, &candidate, files.as_ref())))
        .collect()
}

/// The next job of a stage whose threads share one receiver; `None` when the stage before has
/// ended.
fn take<T>(from: &Mutex<Receiver<T>>) -> Option<T> {
    from.lock().unwrap_or_else(PoisonError::into_inner).recv().ok()
}

/// One candidate judged: an identity, or the issue it is.
fn judge(
    scope: &Scope,
    ctx: &crate::classify::Context<'_>,
    candidate: &Candidate,
    files: Option<&Files>,
) -> Verdict {
    let issue = |message: &str, is_problem| {
        Err(Issue {
            path: scan::relative(&scope.root, &candidate.dir),
            message: message.to_string(),
            is_problem,
        })
    };
    let Some(files) = files else {
        return issue("service directory is a symbolic link", true);
    };
    let inspected = inspect::inspect(candidate, files, scope.trusted());
    if inspected.is_empty() {
        return issue("has no cert.pem or token.jwt: ignored", false);
    }
    let mut identity = assess(inspected, ctx);
    identity.dir = files.dir;
    Ok(identity)
}
