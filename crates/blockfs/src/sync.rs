//! The lock types, and the two locks built from them that the library's
//! concurrency rests on (docs/DESIGN.md §5): the commit barrier and the
//! inode lock table.
//!
//! With `std` the primitives are the standard mutex and condition
//! variable (threads sleep while waiting, as a FUSE server wants); without
//! it, spin locks, which is what a kernel without a scheduler hook can use.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(feature = "std")]
pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

#[cfg(feature = "std")]
pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

#[cfg(not(feature = "std"))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;

#[cfg(feature = "std")]
impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        // A panic while holding the lock is a bug, but the data is still
        // the best view of the filesystem we have; keep serving it.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Mutex<T>(spin::Mutex<T>);

#[cfg(not(feature = "std"))]
impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Mutex(spin::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock()
    }

    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

/// Gives the processor away for a moment while waiting for another
/// thread: a yield with `std`, a spin-loop hint without.
pub(crate) fn relax() {
    #[cfg(feature = "std")]
    std::thread::yield_now();
    #[cfg(not(feature = "std"))]
    core::hint::spin_loop();
}

/// A mutex whose holder can wait for another thread to announce a change
/// (`notify_all`): a condition variable with `std`, a spin without.
pub(crate) struct Monitor<T> {
    mutex: Mutex<T>,
    #[cfg(feature = "std")]
    changed: std::sync::Condvar,
}

impl<T> Monitor<T> {
    pub fn new(value: T) -> Self {
        Monitor {
            mutex: Mutex::new(value),
            #[cfg(feature = "std")]
            changed: std::sync::Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.mutex.lock()
    }

    /// Lets the lock go until the next `notify_all` (or, without `std`, a
    /// moment), then takes it again. Callers wait in a loop on their
    /// condition.
    #[cfg(feature = "std")]
    pub fn wait<'a>(&'a self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.changed.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(not(feature = "std"))]
    pub fn wait<'a>(&'a self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        drop(guard);
        core::hint::spin_loop();
        self.mutex.lock()
    }

    pub fn notify_all(&self) {
        #[cfg(feature = "std")]
        self.changed.notify_all();
    }
}

/// Keeps a value on a cache line of its own, so two cores writing
/// neighbouring values do not steal the line from each other.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub T);

/// Slots the barrier counts operations in (see `CommitBarrier`).
pub(crate) const BARRIER_SLOTS: usize = 16;

/// A slot for the calling thread: threads' stacks lie megabytes apart, so
/// the address of a local tells threads apart without thread-local
/// storage (which a kernel may not have). Two threads sharing a slot only
/// share a cache line; the count stays right.
pub(crate) fn thread_slot() -> usize {
    let marker = 0u8;
    let address = core::ptr::addr_of!(marker) as usize;
    ((address >> 21) ^ (address >> 25)) % BARRIER_SLOTS
}

/// The commit barrier: operations that change the filesystem run inside
/// it (`enter` .. `leave`), and a commit's freeze closes it, which waits
/// for every operation inside to finish and holds new ones at the door,
/// so a frozen transaction holds only whole operations (as JBD2's
/// `t_updates`). Operations are counted per thread slot, so entering and
/// leaving write no cache line another core is using.
pub(crate) struct CommitBarrier {
    inside: [Padded<AtomicUsize>; BARRIER_SLOTS],
    closed: AtomicBool,
    monitor: Monitor<()>,
}

impl CommitBarrier {
    pub fn new() -> Self {
        CommitBarrier {
            inside: Default::default(),
            closed: AtomicBool::new(false),
            monitor: Monitor::new(()),
        }
    }

    /// Enters, waiting while the barrier is closed; returns the slot to
    /// leave by. Never called by a thread already inside.
    pub fn enter(&self) -> usize {
        let slot = thread_slot();
        loop {
            // Counted first, then the flag read: a closer sets the flag
            // first, then reads the counts (both sequentially consistent),
            // so one of the two always sees the other.
            self.inside[slot].0.fetch_add(1, Ordering::SeqCst);
            if !self.closed.load(Ordering::SeqCst) {
                return slot;
            }
            self.leave(slot);
            let mut guard = self.monitor.lock();
            while self.closed.load(Ordering::SeqCst) {
                guard = self.monitor.wait(guard);
            }
        }
    }

    pub fn leave(&self, slot: usize) {
        self.inside[slot].0.fetch_sub(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            let _guard = self.monitor.lock();
            self.monitor.notify_all();
        }
    }

    fn occupied(&self) -> bool {
        self.inside.iter().any(|count| count.0.load(Ordering::SeqCst) != 0)
    }

    /// Closes the barrier and waits until no operation is inside. One
    /// closer at a time (the commit gate sees to it).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut guard = self.monitor.lock();
        while self.occupied() {
            guard = self.monitor.wait(guard);
        }
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        let _guard = self.monitor.lock();
        self.monitor.notify_all();
    }
}

/// Shards of the inode lock table.
const LOCK_SHARDS: usize = 64;

#[derive(Default)]
struct LockShard {
    held: Vec<u32>,
    waiting: usize,
}

/// One exclusive lock per inode number, held for the length of an
/// operation (`lock` .. `unlock`, which `Tx` pairs). Only held numbers
/// take memory. The order in which an operation may take several is in
/// docs/DESIGN.md §5.
pub(crate) struct InodeLocks {
    shards: Box<[Padded<Monitor<LockShard>>]>,
}

impl InodeLocks {
    pub fn new() -> Self {
        InodeLocks { shards: (0..LOCK_SHARDS).map(|_| Padded(Monitor::new(LockShard::default()))).collect() }
    }

    fn shard(&self, ino: u32) -> &Monitor<LockShard> {
        &self.shards[ino as usize % LOCK_SHARDS].0
    }

    pub fn lock(&self, ino: u32) {
        let shard = self.shard(ino);
        let mut guard = shard.lock();
        while guard.held.contains(&ino) {
            guard.waiting += 1;
            guard = shard.wait(guard);
            guard.waiting -= 1;
        }
        guard.held.push(ino);
    }

    pub fn unlock(&self, ino: u32) {
        let shard = self.shard(ino);
        let mut guard = shard.lock();
        if let Some(at) = guard.held.iter().position(|&held| held == ino) {
            guard.held.swap_remove(at);
        }
        if guard.waiting > 0 {
            shard.notify_all();
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn a_closed_barrier_waits_for_those_inside_and_holds_newcomers() {
        let barrier = Arc::new(CommitBarrier::new());
        let slot = barrier.enter();
        let closer = {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.close();
                // Nobody is inside now.
                assert!(!barrier.occupied());
                thread::sleep(Duration::from_millis(20));
                barrier.open();
            })
        };
        while !barrier.closed.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        assert!(!closer.is_finished(), "the closer waits for the operation inside");
        barrier.leave(slot);
        // A newcomer waits for the barrier to open again.
        let entered = barrier.enter();
        assert!(!barrier.closed.load(Ordering::SeqCst));
        barrier.leave(entered);
        closer.join().unwrap();
    }

    #[test]
    fn an_inode_lock_is_exclusive_and_others_are_free() {
        let locks = Arc::new(InodeLocks::new());
        locks.lock(7);
        locks.lock(7 + LOCK_SHARDS as u32);
        let waiter = {
            let locks = locks.clone();
            thread::spawn(move || {
                locks.lock(7);
                locks.unlock(7);
            })
        };
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "a second holder waits");
        locks.unlock(7);
        waiter.join().unwrap();
        locks.unlock(7 + LOCK_SHARDS as u32);
    }
}
