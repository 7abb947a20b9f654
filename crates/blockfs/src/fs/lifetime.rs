//! Inode lifetimes (docs/DESIGN.md, "Inode lifetime").
//!
//! An inode lives while anything holds it: a directory entry (its link
//! count), an open handle, or a kernel reference handed out by a lookup
//! (FUSE counts those and returns them with `FORGET`). When the last link
//! goes, the inode joins the orphan chain in the same transaction; its
//! blocks are freed only when nothing holds it any more, so a reference
//! the kernel kept (a working directory, an `O_PATH` descriptor) can never
//! reach a new file that reused the number. A number reused within one
//! mount also gets a new generation.
//!
//! Holds change only under the inode's lock, which reclamation holds too,
//! so "nothing holds it" cannot change while an inode is being freed.
//!
//! Freeing, like a large truncation, is reclamation: it runs as steps that
//! each fit one transaction, the orphan chain keeping the work safe across
//! a crash, and the step size halves when a step outgrows its credits.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashMap;

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::inode::{DiskInode, FileType};
use crate::format::BLOCK_SIZE;
use crate::sync::{Mutex, Padded};

use super::{FileSystem, Op, Update};

/// Logical blocks the first reclamation step tries to free: every block a
/// 4 GiB file can map, so a file whose blocks fit one transaction is
/// freed in one step.
const FIRST_STEP_BLOCKS: u64 = 1 << 20;
/// A reclamation step: an operation's credits, and as much more of the
/// journal as is free; a step that outgrows that is halved, not retried
/// alone.
const RECLAIM: Update = Update { exclusive_retry: false, ..super::OPERATION };
const SHARDS: usize = 16;

/// Who holds an inode besides its directory entries.
#[derive(Clone, Copy, Debug, Default)]
struct Holds {
    /// Open handles.
    open: u32,
    /// References handed to the kernel by lookups and not yet forgotten.
    lookups: u64,
}

#[derive(Default)]
struct Shard {
    holds: HashMap<u32, Holds>,
    /// Generation of each inode number allocated during this mount.
    generations: HashMap<u32, u64>,
    /// Generations this shard has handed out.
    handed_out: u64,
}

/// Holds on inodes, reclamations to retry, and generations; sharded by
/// inode number, so threads on different files share no lock.
pub(super) struct Lifetimes {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Orphans whose reclamation failed (a device error): retried before
    /// their blocks could be mapped again, at `sync` and at unmount.
    retry: Mutex<BTreeSet<u32>>,
    retries: AtomicUsize,
}

impl Lifetimes {
    pub fn new() -> Self {
        Lifetimes {
            shards: (0..SHARDS).map(|_| Padded(Mutex::new(Shard::default()))).collect(),
            retry: Mutex::new(BTreeSet::new()),
            retries: AtomicUsize::new(0),
        }
    }

    fn shard(&self, ino: u32) -> crate::sync::MutexGuard<'_, Shard> {
        self.shards[ino as usize % SHARDS].0.lock()
    }

    pub fn is_held(&self, ino: u32) -> bool {
        self.shard(ino).holds.contains_key(&ino)
    }

    pub fn hold_open(&self, ino: u32) {
        self.shard(ino).holds.entry(ino).or_default().open += 1;
    }

    pub fn hold_lookup(&self, ino: u32) {
        self.shard(ino).holds.entry(ino).or_default().lookups += 1;
    }

    /// Drops open handles and kernel references; returns whether nothing
    /// holds the inode any more.
    pub fn release(&self, ino: u32, open: u32, lookups: u64) -> bool {
        let mut shard = self.shard(ino);
        let Some(holds) = shard.holds.get_mut(&ino) else { return false };
        holds.open = holds.open.saturating_sub(open);
        holds.lookups = holds.lookups.saturating_sub(lookups);
        if holds.open == 0 && holds.lookups == 0 {
            shard.holds.remove(&ino);
            return true;
        }
        false
    }

    /// Gives `ino` a generation no number had before in this mount: each
    /// shard counts its own, and the shard's index makes them unique.
    pub fn new_generation(&self, ino: u32) {
        let index = ino as usize % SHARDS;
        let mut shard = self.shards[index].0.lock();
        shard.handed_out += 1;
        let generation = shard.handed_out * SHARDS as u64 + index as u64;
        shard.generations.insert(ino, generation);
    }

    /// 0 for inodes not allocated during this mount.
    pub fn generation(&self, ino: u32) -> u64 {
        self.shard(ino).generations.get(&ino).copied().unwrap_or(0)
    }

    fn queue_retry(&self, ino: u32) {
        let mut retry = self.retry.lock();
        retry.insert(ino);
        self.retries.store(retry.len(), Ordering::Relaxed);
    }

    fn unqueue(&self, ino: u32) {
        if self.retries.load(Ordering::Relaxed) > 0 {
            let mut retry = self.retry.lock();
            retry.remove(&ino);
            self.retries.store(retry.len(), Ordering::Relaxed);
        }
    }

    fn is_queued(&self, ino: u32) -> bool {
        self.retries.load(Ordering::Relaxed) > 0 && self.retry.lock().contains(&ino)
    }

    fn queued(&self) -> Vec<u32> {
        if self.retries.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.retry.lock().iter().copied().collect()
    }

    fn clear_retries(&self) {
        self.retry.lock().clear();
        self.retries.store(0, Ordering::Relaxed);
    }
}

impl<D: BlockDevice> Op<'_, D> {
    /// Puts an inode on the orphan chain and queues its reclamation after
    /// the operation: one whose last link just went (freed once nothing
    /// holds it), or one just truncated (its blocks past `size` freed).
    pub(super) fn orphan(&mut self, ino: u32) -> Result<()> {
        self.tx.add_orphan(ino)?;
        self.reclaim.push(ino);
        Ok(())
    }

    /// Frees, within this operation, an inode whose last link it just
    /// dropped, when nothing else holds it and its blocks are few (no
    /// indirect block): no orphan chain, no later transaction. Returns
    /// whether it did; otherwise the caller puts it on the chain.
    pub(super) fn free_unheld(&mut self, ino: u32, inode: &mut DiskInode) -> Result<bool> {
        let few_blocks = inode.indirect == 0 && inode.double_indirect == 0;
        if !few_blocks || self.lifetimes.is_held(ino) || self.tx.volume.is_orphan(ino) {
            return Ok(false);
        }
        if inode.file_type().is_some_and(FileType::has_data_blocks) {
            self.tx.truncate_blocks(ino, inode, 0)?;
        }
        self.free(ino, inode)?;
        Ok(true)
    }

    /// Frees inode `ino` (its blocks are gone), and a directory's name
    /// index with it.
    fn free(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        if inode.file_type() == Some(FileType::Directory) {
            self.tx.volume.dir_indexes.lock().forget(ino);
        }
        let freed = DiskInode { mode: inode.mode, dtime: self.now, ..DiskInode::default() };
        self.tx.free_inode(ino, &freed)
    }

    /// One reclamation step: frees up to `step` logical blocks from the
    /// top of the inode's map. Returns true when the work is done (or is
    /// not to be done now: the inode is no orphan, or, unless `force`, an
    /// unlinked one something still holds).
    fn reclaim_step(&mut self, ino: u32, step: u64, force: bool) -> Result<bool> {
        if !self.tx.volume.is_orphan(ino) {
            return Ok(true);
        }
        let mut inode = self.tx.read_inode(ino)?;
        let unlinked = inode.links_count == 0;
        if unlinked && !force && self.lifetimes.is_held(ino) {
            // The last release reclaims it.
            return Ok(true);
        }
        let keep = if unlinked { 0 } else { (inode.size as u64).div_ceil(BLOCK_SIZE as u64) };
        if inode.file_type().is_some_and(FileType::has_data_blocks) {
            if let Some(last) = self.tx.last_mapped(ino, &inode)?.filter(|&last| last >= keep) {
                let from = keep.max((last + 1).saturating_sub(step));
                self.tx.truncate_blocks(ino, &mut inode, from)?;
                self.tx.write_inode(ino, &inode)?;
                if from > keep {
                    return Ok(false);
                }
            }
        }
        if unlinked {
            self.free(ino, &inode)?;
        } else {
            self.tx.remove_orphan(ino)?;
            self.tx.write_inode(ino, &inode)?;
        }
        Ok(true)
    }
}

impl<D: BlockDevice> FileSystem<D> {
    /// Drops holds; an unlinked inode nothing holds any more is reclaimed.
    pub(super) fn release_holds(&self, ino: u32, open: u32, lookups: u64) -> Result<()> {
        let unheld = {
            let mut tx = self.volume.begin_read();
            tx.lock(ino);
            self.lifetimes.release(ino, open, lookups) && self.volume.is_orphan(ino)
        };
        if unheld {
            self.reclaim(ino, false)?;
        }
        Ok(())
    }

    /// Frees an orphan's blocks (all of them, or those past `size` when it
    /// still has links) in steps, each a transaction holding the inode's
    /// lock, then frees the inode or takes it off the chain. One that
    /// fails is queued to be retried (it stays on the orphan chain).
    pub(super) fn reclaim(&self, ino: u32, force: bool) -> Result<()> {
        let mut step = FIRST_STEP_BLOCKS;
        loop {
            let outcome = self.update(RECLAIM, |op| {
                op.tx.lock(ino);
                op.reclaim_step(ino, step, force)
            });
            match outcome {
                Ok(true) => {
                    self.lifetimes.unqueue(ino);
                    return Ok(());
                }
                Ok(false) => {}
                Err(Error::TooLargeForJournal) if step > 1 => step /= 2,
                Err(error) => {
                    self.lifetimes.queue_retry(ino);
                    return Err(error);
                }
            }
        }
    }

    /// Reclaims what an operation queued; a failure stays queued.
    pub(super) fn reclaim_queued(&self, queued: Vec<u32>) {
        for ino in queued {
            let _ = self.reclaim(ino, false);
        }
    }

    /// Retries the reclamations that failed before.
    pub(super) fn retry_reclaims(&self) -> Result<()> {
        for ino in self.lifetimes.queued() {
            self.reclaim(ino, false)?;
        }
        Ok(())
    }

    /// Finishes a queued reclamation of `ino` before its blocks are used
    /// again (a write or truncation of a file whose earlier truncation
    /// could not complete).
    pub(super) fn settle(&self, ino: u32) -> Result<()> {
        if self.lifetimes.is_queued(ino) {
            self.reclaim(ino, false)?;
        }
        Ok(())
    }

    /// Reclaims every orphan, held or not: at unmount nothing holds
    /// anything, and at mount the chain is what a crash left. Returns how
    /// many there were.
    pub(super) fn reclaim_all(&self) -> Result<usize> {
        let orphans = self.volume.orphan_list();
        for &ino in &orphans {
            self.reclaim(ino, true)?;
        }
        self.lifetimes.clear_retries();
        Ok(orphans.len())
    }
}
