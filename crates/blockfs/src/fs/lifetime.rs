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
//! Freeing, like a large truncation, is reclamation: it runs as steps that
//! each fit one transaction, the orphan chain keeping the work safe across
//! a crash, and the step size halves when a step outgrows the journal.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::inode::{DiskInode, FileType};
use crate::format::BLOCK_SIZE;

use super::State;

/// Logical blocks the first reclamation step tries to free: every block a
/// 4 GiB file can map, so a file whose blocks fit one transaction is
/// freed in one step.
const FIRST_STEP_BLOCKS: u64 = 1 << 20;

/// Who holds an inode besides its directory entries.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Holds {
    /// Open handles.
    pub open: u32,
    /// References handed to the kernel by lookups and not yet forgotten.
    pub lookups: u64,
}

/// Holds on inodes, reclamation waiting to run, and generations.
#[derive(Default)]
pub(super) struct Lifetimes {
    holds: BTreeMap<u32, Holds>,
    /// Orphans to reclaim once nothing holds them.
    reclaim: BTreeSet<u32>,
    /// Generation of each inode number allocated during this mount.
    generations: BTreeMap<u32, u64>,
    next_generation: u64,
}

impl Lifetimes {
    pub fn is_held(&self, ino: u32) -> bool {
        self.holds.contains_key(&ino)
    }

    pub fn hold_open(&mut self, ino: u32) {
        self.holds.entry(ino).or_default().open += 1;
    }

    pub fn hold_lookup(&mut self, ino: u32) {
        self.holds.entry(ino).or_default().lookups += 1;
    }

    /// Drops one open handle and `lookups` kernel references; returns
    /// whether nothing holds the inode any more.
    pub fn release(&mut self, ino: u32, open: u32, lookups: u64) -> bool {
        let Some(holds) = self.holds.get_mut(&ino) else { return false };
        holds.open = holds.open.saturating_sub(open);
        holds.lookups = holds.lookups.saturating_sub(lookups);
        if holds.open == 0 && holds.lookups == 0 {
            self.holds.remove(&ino);
            return true;
        }
        false
    }

    pub fn queue_reclaim(&mut self, ino: u32) {
        self.reclaim.insert(ino);
    }

    pub fn new_generation(&mut self, ino: u32) {
        self.next_generation += 1;
        self.generations.insert(ino, self.next_generation);
    }

    /// 0 for inodes not allocated during this mount.
    pub fn generation(&self, ino: u32) -> u64 {
        self.generations.get(&ino).copied().unwrap_or(0)
    }
}

impl<D: BlockDevice> State<D> {
    /// Puts an inode on the orphan chain and queues its reclamation: one
    /// whose last link just went (freed once nothing holds it), or one just
    /// truncated (its blocks past `size` freed after the operation). The
    /// caller writes `inode`.
    pub(super) fn orphan(&mut self, ino: u32, inode: &mut DiskInode) {
        self.volume.add_orphan(ino, inode);
        self.lifetimes.queue_reclaim(ino);
    }

    /// Drops holds; an unlinked inode nothing holds any more is reclaimed.
    pub(super) fn release_holds(&mut self, ino: u32, open: u32, lookups: u64, now: u32) -> Result<()> {
        if self.lifetimes.release(ino, open, lookups) && self.volume.is_orphan(ino) {
            self.lifetimes.queue_reclaim(ino);
            self.reclaim_queued(now)?;
        }
        Ok(())
    }

    /// Runs the queued reclamations whose inodes nothing holds. Each is a
    /// series of transactions; one that fails stays queued (and on the
    /// orphan chain) for the next attempt, at the latest at unmount.
    pub(super) fn reclaim_queued(&mut self, now: u32) -> Result<()> {
        let queued: Vec<u32> = self.lifetimes.reclaim.iter().copied().collect();
        for ino in queued {
            if !self.volume.is_orphan(ino) {
                self.lifetimes.reclaim.remove(&ino);
                continue;
            }
            let unlinked = self.volume.read_inode(ino)?.links_count == 0;
            if unlinked && self.lifetimes.is_held(ino) {
                // Queued again by the last release.
                self.lifetimes.reclaim.remove(&ino);
                continue;
            }
            self.reclaim(ino, now)?;
            self.lifetimes.reclaim.remove(&ino);
        }
        Ok(())
    }

    /// Finishes a queued reclamation of `ino` before its blocks are used
    /// again (a write or truncation of a file whose earlier truncation
    /// could not complete).
    pub(super) fn settle(&mut self, ino: u32, now: u32) -> Result<()> {
        if self.lifetimes.reclaim.contains(&ino) && self.volume.is_orphan(ino) {
            self.reclaim(ino, now)?;
            self.lifetimes.reclaim.remove(&ino);
        }
        Ok(())
    }

    /// Frees an orphan's blocks (all of them, or those past `size` when it
    /// still has links) in steps, then frees the inode or takes it off the
    /// chain.
    pub(super) fn reclaim(&mut self, ino: u32, now: u32) -> Result<()> {
        let mut step = FIRST_STEP_BLOCKS;
        loop {
            match self.transaction(now, &mut |state, now| state.reclaim_step(ino, step, now)) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(Error::TooLargeForJournal) if step > 1 => step /= 2,
                Err(error) => return Err(error),
            }
        }
    }

    /// One reclamation step: frees up to `step` logical blocks from the
    /// top of the inode's map. Returns true when the work is done.
    fn reclaim_step(&mut self, ino: u32, step: u64, now: u32) -> Result<bool> {
        let mut inode = self.volume.read_inode(ino)?;
        let unlinked = inode.links_count == 0;
        let keep = if unlinked { 0 } else { (inode.size as u64).div_ceil(BLOCK_SIZE as u64) };
        if inode.file_type().is_some_and(FileType::has_data_blocks) {
            if let Some(last) = self.volume.last_mapped(ino, &inode)?.filter(|&last| last >= keep) {
                let from = keep.max((last + 1).saturating_sub(step));
                self.volume.truncate_blocks(ino, &mut inode, from)?;
                self.volume.write_inode(ino, &inode)?;
                if from > keep {
                    return Ok(false);
                }
            }
        }
        self.volume.remove_orphan(ino, &mut inode)?;
        if unlinked {
            inode = DiskInode { mode: inode.mode, dtime: now, ..DiskInode::default() };
            self.volume.dir_indexes.forget(ino);
            self.volume.write_inode(ino, &inode)?;
            self.volume.release_inode(ino);
        } else {
            self.volume.write_inode(ino, &inode)?;
        }
        Ok(true)
    }

    /// Reclaims every orphan, held or not: at unmount nothing holds
    /// anything, and at mount the chain is what a crash left.
    pub(super) fn reclaim_all(&mut self, now: u32) -> Result<usize> {
        let orphans: Vec<u32> = self.volume.orphan_set().iter().copied().collect();
        for &ino in &orphans {
            self.reclaim(ino, now)?;
        }
        self.lifetimes.reclaim.clear();
        Ok(orphans.len())
    }

    /// Loads the on-disk orphan chain into the in-memory set (mount).
    pub(super) fn load_orphans(&mut self) -> Result<()> {
        for ino in self.volume.orphan_chain()? {
            self.volume.set_orphan(ino, true);
        }
        Ok(())
    }
}
