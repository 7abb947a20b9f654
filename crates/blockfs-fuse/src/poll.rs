//! Polling the FUSE device while requests come fast (docs/DESIGN.md §8,
//! "Polling").
//!
//! Every request is a round trip: the client sleeps until the reply, and a
//! server thread that sleeps between requests has to be woken for each
//! one. On a virtual machine those wake-ups are much of what a small
//! request costs. So when requests come in quick succession, the server's
//! channel is switched to non-blocking reads, which fuser retries at once
//! when nothing is queued: the thread finds the next request without
//! sleeping. Polling spins a core through the gaps between requests, so it
//! pays only while those gaps are short. What counts is the idle gap, from
//! the end of one request to the start of the next (how quickly the client
//! comes back), not how long the server takes over a request, which
//! depends on the build and the machine. Polling starts once
//! `BURST_LENGTH` requests in a row each came within `IDLE_GAP` of the end
//! of the one before; a watcher thread switches the channel back to
//! blocking reads at the end of the first window (`--poll-us`) in which
//! the server was idle for longer than `IDLE_GAP` per request on average.
//! So an idle mount, or one whose clients mostly compute (a build)
//! or send a request now and then, costs next to no CPU beyond its
//! requests.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Idle gaps shorter than this make polling pay: a sleeping thread's
/// wake-up costs several microseconds of each round trip
/// (docs/BENCHMARKS.md, "Polling"), and an untar's next request comes
/// about 10 µs after the reply to the last.
const IDLE_GAP: Duration = Duration::from_micros(50);
/// Requests in a row that make a burst: a pair (a lookup and a create, an
/// open and a read) says nothing of what follows.
const BURST_LENGTH: u32 = 8;

/// Not polling: not started yet, or switching the channel failed.
const OFF: u8 = 0;
/// Blocking reads; a burst of requests switches to polling.
const IDLE: u8 = 1;
/// Non-blocking reads; the watcher switches back once requests slow.
const POLLING: u8 = 2;

struct Shared {
    /// How often the watcher looks at the request rate while polling.
    window: Duration,
    /// Requests served so far, and the nanoseconds spent serving them:
    /// the watcher compares both across a window.
    requests: AtomicU64,
    busy: AtomicU64,
    /// When the last request was served, in nanoseconds since `epoch`.
    last_served: AtomicU64,
    epoch: Instant,
    /// Requests in a row that came within `IDLE_GAP` of the end of the one
    /// before.
    quick_in_a_row: AtomicU32,
    state: AtomicU8,
    /// Held while the channel's mode and `state` change together.
    switching: Mutex<()>,
    /// A duplicate of the session's channel (all server threads read the
    /// same open file, whose flags it shares), kept open until the poller
    /// is dropped whatever fuser closes.
    channel: OnceLock<OwnedFd>,
    watcher: OnceLock<Thread>,
    stop: AtomicBool,
}

/// What the request handlers hold: `request` at the start of each.
#[derive(Clone, Default)]
pub(crate) struct Activity(Option<Arc<Shared>>);

impl Activity {
    /// Notes a request's start; the guard notes its end when dropped,
    /// after the handler has replied.
    pub fn request(&self) -> Serving<'_> {
        let Some(shared) = self.0.as_deref() else { return Serving(None) };
        let now = shared.now();
        let gap = now.saturating_sub(shared.last_served.load(Ordering::Relaxed));
        if gap >= IDLE_GAP.as_nanos() as u64 {
            shared.quick_in_a_row.store(0, Ordering::Relaxed);
        } else if shared.quick_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= BURST_LENGTH
            && shared.state.load(Ordering::Relaxed) == IDLE
        {
            shared.switch(IDLE, POLLING);
        }
        Serving(Some((shared, now)))
    }
}

/// A request being served since the time it holds (see
/// [`Activity::request`]).
pub(crate) struct Serving<'a>(Option<(&'a Shared, u64)>);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if let Some((shared, started)) = self.0 {
            let now = shared.now();
            shared.last_served.store(now, Ordering::Relaxed);
            shared.busy.fetch_add(now.saturating_sub(started), Ordering::Relaxed);
            shared.requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Switches the channel from `from` to `to` unless another thread did
    /// first. A failure (which a valid descriptor does not meet) ends
    /// polling.
    fn switch(&self, from: u8, to: u8) {
        let _switching = self.switching.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.state.load(Ordering::Relaxed) != from {
            return;
        }
        let Some(channel) = self.channel.get() else { return };
        match set_non_blocking(channel, to == POLLING) {
            Ok(()) => {
                self.state.store(to, Ordering::Relaxed);
                if let Some(watcher) = self.watcher.get() {
                    watcher.unpark();
                }
            }
            Err(error) => {
                eprintln!("blockfs: cannot switch the FUSE channel's reads ({error}); polling stops");
                self.state.store(OFF, Ordering::Relaxed);
            }
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn tally(&self) -> Tally {
        Tally {
            at: self.now(),
            requests: self.requests.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
        }
    }

    /// The watcher: waits for polling to start, then ends it at the end
    /// of the first window in which the server was idle for longer than
    /// `IDLE_GAP` per request served, on average.
    fn watch(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.state.load(Ordering::Relaxed) != POLLING {
                thread::park();
                continue;
            }
            let mut since = self.tally();
            loop {
                thread::sleep(self.window);
                let now = self.tally();
                let served = now.requests - since.requests;
                let idle = (now.at - since.at).saturating_sub(now.busy - since.busy);
                if self.stop.load(Ordering::Relaxed) || idle >= served * IDLE_GAP.as_nanos() as u64 {
                    break;
                }
                since = now;
            }
            // A request that comes while switching back is served; a
            // quick run after it switches to polling again.
            self.switch(POLLING, IDLE);
        }
    }
}

/// The request counters at one moment (nanoseconds since `epoch`).
struct Tally {
    at: u64,
    requests: u64,
    busy: u64,
}

fn set_non_blocking(channel: &OwnedFd, non_blocking: bool) -> nix::Result<()> {
    let mut flags = OFlag::from_bits_retain(fcntl(channel, FcntlArg::F_GETFL)?);
    flags.set(OFlag::O_NONBLOCK, non_blocking);
    fcntl(channel, FcntlArg::F_SETFL(flags)).map(drop)
}

/// The poller of one session; dropping it stops the watcher.
pub(crate) struct Poller {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
}

impl Poller {
    /// A poller that checks the request rate every `window` while
    /// polling. It does nothing until `start`.
    pub fn new(window: Duration) -> Self {
        let shared = Shared {
            window,
            requests: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            last_served: AtomicU64::new(0),
            epoch: Instant::now(),
            quick_in_a_row: AtomicU32::new(0),
            state: AtomicU8::new(OFF),
            switching: Mutex::new(()),
            channel: OnceLock::new(),
            watcher: OnceLock::new(),
            stop: AtomicBool::new(false),
        };
        Poller { shared: Arc::new(shared), watcher: None }
    }

    pub fn activity(&self) -> Activity {
        Activity(Some(self.shared.clone()))
    }

    /// Polls `channel`, the session's, from the next burst of requests.
    pub fn start(&mut self, channel: BorrowedFd<'_>) -> io::Result<()> {
        let channel = channel.try_clone_to_owned()?;
        let shared = self.shared.clone();
        let watcher = thread::Builder::new().name("blockfs-poll".into()).spawn(move || shared.watch())?;
        self.shared.watcher.set(watcher.thread().clone()).ok();
        self.shared.channel.set(channel).ok();
        self.shared.state.store(IDLE, Ordering::Relaxed);
        self.watcher = Some(watcher);
        Ok(())
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            watcher.thread().unpark();
            watcher.join().ok();
        }
    }
}
