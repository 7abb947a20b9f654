//! The transaction handle: every block and inode an operation reads or
//! changes goes through one (docs/DESIGN.md §3). A `Tx` holds what the
//! operation holds — its place in the commit barrier, its journal
//! credits, the inode locks it took, the blocks it pinned — and the undo
//! log that takes it back to where it began.
//!
//! Undo is by ownership. A block only one inode's holder changes (a
//! directory block, an indirect block, file data) is restored whole from
//! its prior contents. Blocks that concurrent operations share are never
//! restored whole: an inode-table block gets back the 96 bytes of the
//! inode this operation wrote (its inode lock keeps others off them), and
//! the bitmap, the counters and the orphan chain are undone by the
//! inverse change, under their own locks, since others may have changed
//! the same bytes meanwhile.
//!
//! Freed blocks stay allocated until the operation succeeds
//! ([`Tx::finish`]): until then no other operation can take one that a
//! rollback would give back to its owner.

use alloc::vec::Vec;
use core::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashSet;

use crate::allocator::InodeTaken;
use crate::cache::{BlockKind, Change, Fill, Prior};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::geometry::Geometry;
use crate::format::inode::{DiskInode, DTIME_OFFSET, INODE_SIZE};
use crate::format::Block;
use crate::sync::{thread_slot, MutexGuard};
use crate::volume::{CommitState, Volume};

/// One change to undo.
pub(crate) enum Undo {
    /// A block only this operation changes: its state before.
    Block {
        block: u32,
        prior: Prior,
    },
    /// An inode's slot as it was; `dtime` too when the operation owned it
    /// (the inode was on no orphan chain: see `orphan`).
    Inode {
        ino: u32,
        prior: [u8; INODE_SIZE],
        with_dtime: bool,
    },
    /// A block's bitmap bit set (and counted), for an inode of this group.
    BlockAllocated(u32, u32),
    /// An inode counted as taken.
    InodeAllocated(InodeTaken),
    /// An inode held back from allocation while this operation frees it.
    InodeFreeing(u32),
    OrphanAdded(u32),
    OrphanRemoved(u32),
}

enum Scope<'v> {
    /// Reads only: outside the barrier.
    Read,
    /// Inside the barrier, in this slot.
    Update { slot: usize },
    /// Alone: the barrier closed and the commit gate held.
    Exclusive { gate: MutexGuard<'v, CommitState> },
}

/// Hashes block numbers without a seed of its own, so making a set costs
/// nothing shared: hashbrown's default hasher, without `std`, seeds every
/// new set from one global counter that each core would take in turn.
#[derive(Default)]
struct BlockNumberHasher(u64);

impl Hasher for BlockNumberHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u32(byte as u32);
        }
    }

    fn write_u32(&mut self, number: u32) {
        // Fibonacci hashing: the low bits (the bucket) and the high bits
        // (hashbrown's tag) both depend on every bit of the number.
        self.0 = (self.0.rotate_left(32) ^ number as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// What a transaction records as it goes. Kept between transactions by
/// the thread slot that ran one (`Volume::take_buffers`), so an
/// operation allocates nothing once the buffers have grown.
#[derive(Default)]
pub(crate) struct TxBuffers {
    undo: Vec<Undo>,
    /// Blocks changed or pinned so far (each pinned once).
    touched: HashSet<u32, BuildHasherDefault<BlockNumberHasher>>,
    pinned: Vec<u32>,
    /// Blocks freed, and inodes freed, once the operation succeeds.
    frees: Vec<u32>,
    /// Of `frees`, those the running transaction allocated (free at once).
    frees_at_once: Vec<u32>,
    freed_inodes: Vec<u32>,
    /// Directories whose name index the operation used or changed.
    dirs: Vec<u32>,
    locked: Vec<u32>,
}

impl TxBuffers {
    /// Empties the buffers for the next transaction; a buffer grown huge
    /// (a reclamation of a large file) is let go.
    pub fn clear(&mut self) {
        const KEEP: usize = 4096;
        self.undo.clear();
        self.touched.clear();
        self.pinned.clear();
        self.frees.clear();
        self.frees_at_once.clear();
        self.freed_inodes.clear();
        self.dirs.clear();
        self.locked.clear();
        if self.undo.capacity() > KEEP || self.touched.capacity() > KEEP || self.frees.capacity() > KEEP {
            *self = TxBuffers::default();
        }
    }
}

pub(crate) struct Tx<'v, D: BlockDevice> {
    pub volume: &'v Volume<D>,
    scope: Scope<'v>,
    _rename: Option<MutexGuard<'v, ()>>,
    /// Journal blocks this operation reserved (none when it runs alone),
    /// and those it made part of the running transaction so far. It may
    /// use more than it reserved while the journal has room for them
    /// beside everyone's reservations (`check_room`).
    credits: usize,
    used: usize,
    /// Blocks and inodes taken (negative) and given back, to count once
    /// the operation succeeds.
    counted: (i64, i64),
    /// A block that is not in memory fails with `NotCached` instead of
    /// being read (see `FileSystem::update`).
    defer_misses: bool,
    /// Thread slot the buffers go back to.
    slot: usize,
    /// Commits landed when the transaction began.
    landed_at_begin: u64,
    log: TxBuffers,
    /// Neither finished nor rolled back yet.
    open: bool,
}

impl<'v, D: BlockDevice> Tx<'v, D> {
    fn new(
        volume: &'v Volume<D>,
        scope: Scope<'v>,
        rename: Option<MutexGuard<'v, ()>>,
        credits: usize,
    ) -> Self {
        let slot = match scope {
            Scope::Update { slot } => slot,
            _ => thread_slot(),
        };
        Tx {
            volume,
            scope,
            _rename: rename,
            credits,
            used: 0,
            counted: (0, 0),
            defer_misses: false,
            slot,
            landed_at_begin: volume.commits_landed(),
            log: volume.take_buffers(slot),
            open: true,
        }
    }

    pub(crate) fn read(volume: &'v Volume<D>) -> Self {
        Tx::new(volume, Scope::Read, None, 0)
    }

    pub(crate) fn update(
        volume: &'v Volume<D>,
        slot: usize,
        credits: usize,
        rename: Option<MutexGuard<'v, ()>>,
        defer_misses: bool,
    ) -> Self {
        let mut tx = Tx::new(volume, Scope::Update { slot }, rename, credits);
        tx.defer_misses = defer_misses;
        tx
    }

    pub(crate) fn exclusive(
        volume: &'v Volume<D>,
        rename: MutexGuard<'v, ()>,
        gate: MutexGuard<'v, CommitState>,
    ) -> Self {
        Tx::new(volume, Scope::Exclusive { gate }, Some(rename), 0)
    }

    pub fn geometry(&self) -> &'v Geometry {
        &self.volume.geometry
    }

    fn is_read_only(&self) -> bool {
        matches!(self.scope, Scope::Read)
    }

    /// Whether writes are allowed (a writable mount that has not aborted,
    /// and a transaction that may change things).
    pub fn check_writable(&self) -> Result<()> {
        self.volume.check_writable()?;
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    // ---- inode locks ------------------------------------------------------

    /// Takes inode `ino`'s lock for the rest of the transaction (once;
    /// the order is the caller's to keep: docs/DESIGN.md §5).
    pub fn lock(&mut self, ino: u32) {
        if !self.log.locked.contains(&ino) {
            self.volume.inode_locks.lock(ino);
            self.log.locked.push(ino);
        }
    }

    /// Lets inode `ino`'s lock go (only before the transaction changed
    /// anything, or in one that only reads).
    pub fn unlock(&mut self, ino: u32) {
        debug_assert!(self.log.undo.is_empty(), "locks are kept while there are changes to undo");
        if let Some(at) = self.log.locked.iter().position(|&held| held == ino) {
            self.log.locked.remove(at);
            self.volume.inode_locks.unlock(ino);
        }
    }

    /// Lets every inode lock go (only before the transaction changed
    /// anything: a rollback needs the locks that kept others off).
    pub fn unlock_all(&mut self) {
        debug_assert!(self.log.undo.is_empty(), "locks are kept while there are changes to undo");
        for ino in self.log.locked.drain(..).rev() {
            self.volume.inode_locks.unlock(ino);
        }
    }

    // ---- blocks -------------------------------------------------------------

    /// With misses deferred, fails for a block the cache lacks.
    fn check_miss(&self, block: u32) -> Result<()> {
        if self.defer_misses && !self.volume.store().is_cached(block) {
            Err(Error::NotCached(block))
        } else {
            Ok(())
        }
    }

    /// Runs `f` on a block's contents. `f` must not use the store (it runs
    /// under the cache shard's lock).
    pub fn read_block<R>(&mut self, block: u32, f: impl FnOnce(&Block) -> R) -> Result<R> {
        if self.defer_misses {
            return self.volume.store().peek(block, f)?.ok_or(Error::NotCached(block));
        }
        self.volume.store().read(block, f)
    }

    /// Runs `f` on a block's contents if they are in memory, without
    /// reading the device.
    pub fn peek_block<R>(&mut self, block: u32, f: impl FnOnce(&Block) -> R) -> Result<Option<R>> {
        self.volume.store().peek(block, f)
    }

    /// Whether a block's current contents are in memory.
    pub fn is_cached(&self, block: u32) -> bool {
        self.volume.store().is_cached(block)
    }

    /// Reads consecutive uncached blocks straight from the device.
    pub fn read_uncached(&self, first: u32, buf: &mut [u8]) -> Result<()> {
        self.volume.store().read_uncached(first, buf)
    }

    /// Marks `block` touched; true the first time.
    fn first_touch(&mut self, block: u32) -> bool {
        self.log.touched.insert(block)
    }

    /// Before a change that may log one more block: past its credits, an
    /// operation may go on only while the journal has room for the block
    /// beside the running transaction and the others' reservations (a
    /// block left dirty by a rollback stays in the transaction, so the
    /// limit is kept before, not after).
    fn check_room(&self) -> Result<()> {
        if self.used >= self.credits && self.volume.journal_room(self.credits) == 0 {
            return Err(Error::TooLargeForJournal);
        }
        Ok(())
    }

    fn changed(&mut self, block: u32, first: bool, new_metadata: bool) {
        if first {
            self.log.pinned.push(block);
        }
        self.used += new_metadata as usize;
    }

    /// `fill` as this transaction reads: with misses deferred, a block
    /// that is not in memory is not read.
    fn fill(&self, fill: Fill) -> Fill {
        match fill {
            Fill::Read if self.defer_misses => Fill::Cached,
            fill => fill,
        }
    }

    /// Changes a block that only this operation's inode holds (directory,
    /// indirect and data blocks): its prior contents are kept for undo the
    /// first time. `fill` says what the block starts as when not cached.
    /// `f` must not use the store.
    pub fn modify_block<R>(
        &mut self,
        block: u32,
        kind: BlockKind,
        fill: Fill,
        f: impl FnOnce(&mut Block) -> R,
    ) -> Result<R> {
        self.check_writable()?;
        self.check_room()?;
        let first = self.first_touch(block);
        let change = Change { kind, fill: self.fill(fill), pin: first, snapshot: first };
        match self.volume.store().modify(block, change, f) {
            Ok((value, changed)) => {
                if let Some(prior) = changed.prior {
                    self.log.undo.push(Undo::Block { block, prior });
                }
                self.changed(block, first, changed.new_metadata);
                Ok(value)
            }
            Err(error) => {
                if first {
                    self.log.touched.remove(&block);
                }
                Err(error)
            }
        }
    }

    /// Changes a metadata block others change too (a bitmap block, a
    /// block of inodes): pinned, with no prior contents kept. The caller
    /// records how to undo its bytes.
    pub fn modify_shared<R>(&mut self, block: u32, f: impl FnOnce(&mut Block) -> R) -> Result<R> {
        self.check_writable()?;
        self.check_room()?;
        let first = self.first_touch(block);
        let change =
            Change { kind: BlockKind::Metadata, fill: self.fill(Fill::Read), pin: first, snapshot: false };
        match self.volume.store().modify(block, change, f) {
            Ok((value, changed)) => {
                self.changed(block, first, changed.new_metadata);
                Ok(value)
            }
            Err(error) => {
                if first {
                    self.log.touched.remove(&block);
                }
                Err(error)
            }
        }
    }

    /// Reads a block into memory and pins it unchanged, so a later change
    /// finds it there and cannot fail on a read.
    pub fn pin_block(&mut self, block: u32) -> Result<()> {
        self.check_writable()?;
        self.check_miss(block)?;
        if self.first_touch(block) {
            if let Err(error) = self.volume.store().pin(block) {
                self.log.touched.remove(&block);
                return Err(error);
            }
            self.log.pinned.push(block);
        }
        Ok(())
    }

    /// Drops a freed block's cached contents (undoably).
    pub fn discard(&mut self, block: u32) {
        let first = self.first_touch(block);
        if let Some(prior) = self.volume.store().discard(block, first) {
            self.log.undo.push(Undo::Block { block, prior });
        }
    }

    /// Writes whole file-data blocks just allocated straight to the
    /// device (see `data::write_data`); a rollback frees them again.
    pub fn write_fresh(&mut self, first: u32, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.volume.store().write_fresh(first, data)
    }

    // ---- inodes -------------------------------------------------------------

    /// Inode numbers that have a slot in the table.
    pub fn check_inode(&self, ino: u32) -> Result<()> {
        if ino < self.geometry().usable_inodes() {
            Ok(())
        } else {
            Err(Error::corrupt(Corruption::InodeOutOfRange(ino), Some(ino), None))
        }
    }

    pub fn read_inode(&mut self, ino: u32) -> Result<DiskInode> {
        self.check_inode(ino)?;
        let (block, slot) = self.geometry().inode_location(ino);
        self.read_block(block, |bytes| DiskInode::decode_slot(bytes, slot))
    }

    /// Writes an inode, all but its `dtime`, which is the orphan chain's
    /// (see `orphan`).
    pub fn write_inode(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        self.store_inode(ino, inode, false)
    }

    /// Writes an inode whole, `dtime` included: one no chain holds, just
    /// allocated or just freed.
    pub fn put_inode(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        self.store_inode(ino, inode, true)
    }

    fn store_inode(&mut self, ino: u32, inode: &DiskInode, with_dtime: bool) -> Result<()> {
        self.check_inode(ino)?;
        let (block, slot) = self.geometry().inode_location(ino);
        let at = slot * INODE_SIZE;
        let prior = self.modify_shared(block, |bytes| {
            let mut prior = [0u8; INODE_SIZE];
            prior.copy_from_slice(&bytes[at..at + INODE_SIZE]);
            inode.encode_slot(bytes, slot);
            if !with_dtime {
                let dtime = at + DTIME_OFFSET..at + DTIME_OFFSET + 4;
                bytes[dtime.clone()].copy_from_slice(&prior[DTIME_OFFSET..DTIME_OFFSET + 4]);
            }
            prior
        })?;
        self.log.undo.push(Undo::Inode { ino, prior, with_dtime });
        Ok(())
    }

    /// Sets an inode's `dtime` in place, with no undo of its own (the
    /// orphan chain's changes are undone by their inverse). The block must
    /// have been pinned (`pin_block`), so this reads nothing.
    pub fn set_dtime(&mut self, ino: u32, dtime: u32) -> Result<()> {
        let (block, slot) = self.geometry().inode_location(ino);
        let at = slot * INODE_SIZE + DTIME_OFFSET;
        self.modify_shared(block, |bytes| bytes[at..at + 4].copy_from_slice(&dtime.to_le_bytes()))
    }

    // ---- the log ------------------------------------------------------------

    pub fn record(&mut self, undo: Undo) {
        self.log.undo.push(undo);
    }

    /// Notes a directory whose name index this operation used.
    pub fn note_dir(&mut self, dir: u32) {
        if self.log.dirs.last() != Some(&dir) {
            self.log.dirs.push(dir);
        }
    }

    /// Whether a commit has landed since the transaction began (and may
    /// have made blocks it freed free).
    pub fn space_freed_since_begin(&self) -> bool {
        self.volume.commits_landed() != self.landed_at_begin
    }

    /// Counts blocks taken (negative) once the operation succeeds.
    pub fn count_blocks(&mut self, delta: i64) {
        self.counted.0 += delta;
    }

    /// Counts inodes taken (negative) once the operation succeeds.
    pub fn count_inodes(&mut self, delta: i64) {
        self.counted.1 += delta;
    }

    /// A block to free once the operation succeeds.
    pub fn free_later(&mut self, block: u32) {
        self.log.frees.push(block);
    }

    /// An inode (already written free) to count free once the operation
    /// succeeds.
    pub fn count_free_later(&mut self, ino: u32) {
        self.log.freed_inodes.push(ino);
    }

    /// Ends the operation keeping its changes: they join the running
    /// journal transaction. Fails, changing nothing, when the operation
    /// outgrew its journal credits (`TooLargeForJournal`) or freed a block
    /// twice; the caller then rolls back.
    pub fn finish(&mut self) -> Result<()> {
        if !self.open || self.is_read_only() {
            self.close();
            return Ok(());
        }
        let volume = self.volume;
        if !self.log.frees.is_empty() {
            self.log.frees.sort_unstable();
            if let Some(pair) = self.log.frees.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(Error::corrupt(Corruption::DoubleFree(pair[0]), None, Some(pair[0])));
            }
            let frees = core::mem::take(&mut self.log.frees);
            let checked = self.check_frees(&frees);
            self.log.frees = frees;
            checked?;
            if volume.has_journal() {
                // Journal blocks left for the bitmap blocks the frees change.
                let credits = self.credits;
                let room = || volume.journal_room(credits);
                self.log.frees_at_once.clear();
                if volume.add_pending_frees(&self.log.frees, room, &mut self.log.frees_at_once)?.is_none() {
                    return Err(Error::TooLargeForJournal);
                }
                self.counted.0 += volume.free_at_once(&self.log.frees_at_once);
            } else {
                self.counted.0 += volume.free_at_once(&self.log.frees);
            }
        }
        for &ino in &self.log.freed_inodes {
            volume.allocator.inode_freed(ino);
        }
        let (blocks, inodes) = self.counted;
        volume.allocator.count(self.slot, blocks, inodes + self.log.freed_inodes.len() as i64);
        if !self.log.freed_inodes.is_empty() {
            volume.note_head_changed();
        }
        self.log.undo.clear();
        self.close();
        Ok(())
    }

    /// Ends the operation undoing all it changed, in memory and in the
    /// cache: the volume is as the operation found it.
    pub fn rollback(&mut self) {
        if !self.open {
            return;
        }
        let volume = self.volume;
        let changed_blocks = !self.log.undo.is_empty();
        while let Some(undo) = self.log.undo.pop() {
            match undo {
                Undo::Block { block, prior } => volume.store().restore(block, prior),
                Undo::Inode { ino, prior, with_dtime } => {
                    let (block, slot) = volume.geometry.inode_location(ino);
                    let at = slot * INODE_SIZE;
                    volume.store().patch(block, |bytes| {
                        let slot = &mut bytes[at..at + INODE_SIZE];
                        if with_dtime {
                            slot.copy_from_slice(&prior);
                        } else {
                            slot[..DTIME_OFFSET].copy_from_slice(&prior[..DTIME_OFFSET]);
                            slot[DTIME_OFFSET + 4..].copy_from_slice(&prior[DTIME_OFFSET + 4..]);
                        }
                    });
                }
                Undo::BlockAllocated(block, group) => {
                    let (bitmap_block, bit) = volume.geometry.bitmap_location(block);
                    volume
                        .store()
                        .patch(bitmap_block, |bytes| bytes[(bit / 8) as usize] &= !(1u8 << (bit % 8)));
                    if volume.has_journal() {
                        volume.forget_allocated(block);
                    }
                    volume.allocator.unallocate_block(block, group);
                }
                Undo::InodeAllocated(taken) => volume.allocator.unallocate_inode(&taken),
                Undo::InodeFreeing(ino) => volume.allocator.unhold(ino),
                Undo::OrphanAdded(ino) => volume.unchain_orphan(ino),
                Undo::OrphanRemoved(ino) => volume.chain_orphan(ino),
            }
        }
        if changed_blocks && !self.log.dirs.is_empty() {
            let mut indexes = volume.dir_indexes.lock();
            for &dir in &self.log.dirs {
                indexes.forget(dir);
            }
        }
        self.log.frees.clear();
        self.log.freed_inodes.clear();
        self.counted = (0, 0);
        self.close();
    }

    /// Unpins what the operation pinned and returns its credits.
    fn close(&mut self) {
        for block in self.log.pinned.drain(..) {
            self.volume.store().unpin(block);
        }
        self.log.touched.clear();
        self.volume.release_credits(core::mem::take(&mut self.credits));
        self.open = false;
    }

    /// Commits the running transaction from inside an exclusive
    /// transaction that has finished (the journal's first use after
    /// `tune`).
    pub fn commit_alone(&mut self, now: u32) -> Result<usize> {
        debug_assert!(!self.open, "the operation has finished");
        match &mut self.scope {
            Scope::Exclusive { gate } => self.volume.commit_closed(gate, now),
            _ => self.volume.commit(now),
        }
    }
}

impl<D: BlockDevice> Drop for Tx<'_, D> {
    fn drop(&mut self) {
        if self.open {
            self.rollback();
        }
        for ino in self.log.locked.drain(..).rev() {
            self.volume.inode_locks.unlock(ino);
        }
        self.volume.return_buffers(self.slot, core::mem::take(&mut self.log));
        match self.scope {
            Scope::Read => {}
            Scope::Update { slot } => self.volume.barrier.leave(slot),
            Scope::Exclusive { .. } => self.volume.barrier.open(),
        }
    }
}
