//! The mounted image's shared state: the block store, block 0's
//! superblock and extension record, allocation state, orphans, pending
//! frees and directory indexes, each behind a lock of its own; and the
//! commit protocol. Operations reach all of it through a transaction
//! (`tx::Tx`), which the volume hands out.
//!
//! Concurrency (docs/DESIGN.md §5): operations that change anything run
//! inside the commit barrier, each with journal credits reserved; a
//! commit closes the barrier only to freeze the running transaction, and
//! writes it with the barrier open again. The commit gate serialises
//! commits (and write-backs, whose copies must not race a commit's to
//! the device).

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hashbrown::{HashMap, HashSet};

use crate::allocator::Allocator;
use crate::cache::{BlockCache, BlockKind, Change, Fill};
use crate::commit::Frozen;
use crate::device::BlockDevice;
use crate::dir::DirIndexes;
use crate::error::{Error, Result};
use crate::format::extension::Extension;
use crate::format::geometry::Geometry;
use crate::format::superblock::Superblock;
use crate::format::Block;
use crate::journal::Journal;
use crate::store::BlockStore;
use crate::sync::{relax, thread_slot, CommitBarrier, InodeLocks, Mutex, Padded, BARRIER_SLOTS};
use crate::tx::{Tx, TxBuffers};

/// Blocks freed by the running transaction. Their bitmap bits clear at
/// commit, so no block is reused (and overwritten with new data) while a
/// crash could still bring back the old owner. Hashed, not ordered: every
/// freed block is looked up and inserted, and only the commit needs them
/// in order (`take`).
///
/// Blocks the running transaction allocated itself are the exception: no
/// commit has seen them in use, so a crash brings back no owner, and
/// freeing one frees it at once (a file that lives and dies between two
/// commits gives its blocks straight back for the next file).
#[derive(Default)]
pub(crate) struct PendingFrees {
    blocks: HashSet<u32>,
    /// Pending frees per bitmap block: the bitmap blocks the commit will
    /// change, which count against the journal.
    per_bitmap_block: HashMap<u32, u32>,
    /// Blocks the running transaction allocated.
    allocated: HashSet<u32>,
}

impl PendingFrees {
    pub fn contains(&self, block: u32) -> bool {
        self.blocks.contains(&block)
    }

    /// Whether a pending free lies under bitmap block `bitmap_block`.
    pub fn touches(&self, bitmap_block: u32) -> bool {
        self.per_bitmap_block.contains_key(&bitmap_block)
    }

    pub fn insert(&mut self, block: u32, bitmap_block: u32) {
        if self.blocks.insert(block) {
            *self.per_bitmap_block.entry(bitmap_block).or_insert(0) += 1;
        }
    }

    /// Hands the pending frees to a commit, which also ends the running
    /// transaction's allocations.
    fn take_into(&mut self, frees: &mut Vec<u32>) {
        self.per_bitmap_block.clear();
        self.allocated.clear();
        frees.extend(self.blocks.drain());
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}

/// Operations between a thread slot's checks of pending frees against
/// free space.
const SPACE_CHECK_INTERVAL: u32 = 64;

/// Shards of the pending frees.
const PENDING_SHARDS: usize = 16;

/// Block 0's superblock and extension record. The free counts and the
/// orphan chain's head are kept by `Allocation` and `Orphans`, and put in
/// when block 0 is encoded.
pub(crate) struct Head {
    pub superblock: Superblock,
    pub extension: Option<Extension>,
}

/// Inodes on the orphan chain: no links but still referenced, or links
/// but blocks past `size` still to free (see `orphan`).
pub(crate) struct Orphans {
    pub members: BTreeSet<u32>,
    /// The chain's first inode on disk (images with an extension record).
    pub head: u32,
}

/// What the commit gate guards: the journal as the last commit left it.
pub(crate) struct CommitState {
    journal: Option<Journal>,
}

fn encode_block0(superblock: &Superblock, extension: Option<&Extension>, block: &mut Block) {
    superblock.encode_block(block);
    if let Some(extension) = extension {
        extension.encode_block(block);
    }
}

pub(crate) struct Volume<D> {
    store: BlockStore<D>,
    pub geometry: Geometry,
    head: Mutex<Head>,
    /// Block 0 carries an extension record (so the orphan chain is kept
    /// on disk).
    has_extension: AtomicBool,
    /// Block 0 changed since it was last written (counters, orphan head,
    /// mount state).
    head_changed: AtomicBool,
    pub(crate) allocator: Allocator,
    pub(crate) orphans: Mutex<Orphans>,
    /// Sharded by bitmap block, so operations freeing under different
    /// bitmap blocks take different locks.
    pending: Box<[Padded<Mutex<PendingFrees>>]>,
    /// Bitmap blocks the pending frees change, for checks that take no lock.
    pending_bitmap_blocks: Padded<AtomicUsize>,
    /// Orphans, for checks that take no lock.
    pub(crate) orphan_count: Padded<AtomicUsize>,
    /// Blocks freed by the commit being written, free once it lands.
    landing_frees: Padded<AtomicUsize>,
    /// Commits landed since mount.
    landed: Padded<AtomicU64>,
    /// Name indexes of large directories.
    pub(crate) dir_indexes: Mutex<DirIndexes>,
    pub(crate) inode_locks: InodeLocks,
    /// Held by a rename across its operation (docs/DESIGN.md §5).
    pub(crate) rename_lock: Mutex<()>,
    pub(crate) barrier: CommitBarrier,
    /// Journal blocks reserved by operations in progress.
    reserved: Padded<AtomicUsize>,
    commit: Mutex<CommitState>,
    /// The journal's capacity once attached (0: no journal).
    journal_capacity: AtomicUsize,
    /// Inode number of the journal, hidden from every operation (0: none).
    journal_inode: AtomicU32,
    /// Operations each thread slot finished, to space out its checks of
    /// free space (`frees_crowd_free_space`).
    space_checks: Box<[Padded<AtomicU32>]>,
    /// Transactions' buffers between transactions, per thread slot.
    buffers: Box<[Padded<Mutex<Vec<TxBuffers>>>]>,
}

impl<D: BlockDevice> Volume<D> {
    pub fn new(
        device: D,
        cache: BlockCache,
        superblock: Superblock,
        extension: Option<Extension>,
        geometry: Geometry,
        read_only: bool,
        dir_indexes: DirIndexes,
    ) -> Self {
        Volume {
            store: BlockStore::new(device, cache, geometry.block_count, read_only),
            geometry,
            allocator: Allocator::new(&geometry, superblock.free_blocks, superblock.free_inodes),
            orphans: Mutex::new(Orphans {
                members: BTreeSet::new(),
                head: extension.map_or(0, |extension| extension.orphan_head),
            }),
            has_extension: AtomicBool::new(extension.is_some()),
            head: Mutex::new(Head { superblock, extension }),
            head_changed: AtomicBool::new(false),
            pending: (0..PENDING_SHARDS).map(|_| Padded(Mutex::new(PendingFrees::default()))).collect(),
            pending_bitmap_blocks: Padded(AtomicUsize::new(0)),
            orphan_count: Padded(AtomicUsize::new(0)),
            landing_frees: Padded(AtomicUsize::new(0)),
            landed: Padded(AtomicU64::new(0)),
            dir_indexes: Mutex::new(dir_indexes),
            inode_locks: InodeLocks::new(),
            rename_lock: Mutex::new(()),
            barrier: CommitBarrier::new(),
            reserved: Padded(AtomicUsize::new(0)),
            commit: Mutex::new(CommitState { journal: None }),
            journal_capacity: AtomicUsize::new(0),
            journal_inode: AtomicU32::new(0),
            space_checks: (0..BARRIER_SLOTS).map(|_| Padded(AtomicU32::new(0))).collect(),
            buffers: (0..BARRIER_SLOTS).map(|_| Padded(Mutex::new(Vec::new()))).collect(),
        }
    }

    pub fn store(&self) -> &BlockStore<D> {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut BlockStore<D> {
        &mut self.store
    }

    pub fn into_device(self) -> D {
        self.store.into_device()
    }

    pub fn is_read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// Whether writes are allowed (a writable mount that has not aborted).
    pub fn check_writable(&self) -> Result<()> {
        self.store.check_writable()
    }

    /// Installs the journal: from now on dirty metadata waits for commits.
    pub fn attach_journal(&self, journal: Journal) {
        self.store.set_pin_metadata(true);
        self.journal_capacity.store(journal.capacity(), Ordering::SeqCst);
        self.commit.lock().journal = Some(journal);
    }

    pub fn has_journal(&self) -> bool {
        self.journal_capacity.load(Ordering::SeqCst) > 0
    }

    pub fn journal_inode(&self) -> Option<u32> {
        Some(self.journal_inode.load(Ordering::Relaxed)).filter(|&ino| ino != 0)
    }

    pub fn set_journal_inode(&self, ino: Option<u32>) {
        self.journal_inode.store(ino.unwrap_or(0), Ordering::Relaxed);
    }

    // ---- block 0 ----------------------------------------------------------

    /// The superblock as it is now, counters included.
    pub fn superblock(&self) -> Superblock {
        let mut superblock = self.head.lock().superblock;
        superblock.free_blocks = self.allocator.free_blocks();
        superblock.free_inodes = self.allocator.free_inodes();
        superblock
    }

    /// The extension record as it is now, the orphan chain's head included.
    pub fn extension(&self) -> Option<Extension> {
        let mut extension = self.head.lock().extension?;
        extension.orphan_head = self.orphans.lock().head;
        Some(extension)
    }

    /// Changes block 0's fields other than the counters and orphan head.
    pub fn change_head(&self, change: impl FnOnce(&mut Head)) {
        let mut head = self.head.lock();
        change(&mut head);
        self.has_extension.store(head.extension.is_some(), Ordering::Relaxed);
        self.note_head_changed();
    }

    pub fn has_extension(&self) -> bool {
        self.has_extension.load(Ordering::Relaxed)
    }

    /// Notes that block 0 must be written with the next commit.
    pub fn note_head_changed(&self) {
        // Read first: a store to a shared line takes it from other cores.
        if !self.head_changed.load(Ordering::Relaxed) {
            self.head_changed.store(true, Ordering::Relaxed);
        }
    }

    /// Puts the superblock (and extension record) as they are now into
    /// block 0, in the cache.
    pub fn store_superblock(&self) -> Result<()> {
        let (superblock, extension) = (self.superblock(), self.extension());
        let change = Change { kind: BlockKind::Metadata, fill: Fill::Read, pin: false, snapshot: false };
        self.store.modify(0, change, |block| encode_block0(&superblock, extension.as_ref(), block))?;
        self.head_changed.store(false, Ordering::Relaxed);
        Ok(())
    }

    // ---- transactions -------------------------------------------------------

    /// A transaction that only reads: no barrier, no undo; misses read
    /// the device in place (holding only the inode locks it takes).
    pub fn begin_read(&self) -> Tx<'_, D> {
        Tx::read(self)
    }

    /// A transaction that may change the volume, with `credits` journal
    /// blocks reserved (at most the journal's capacity), inside the
    /// commit barrier, after taking the rename lock when `rename`. A
    /// running transaction without room for the credits is committed
    /// first. `defer_misses` makes a read of an uncached block fail with
    /// `NotCached` (see `FileSystem::update`).
    pub fn begin_update(
        &self,
        credits: usize,
        rename: bool,
        defer_misses: bool,
        now: u32,
    ) -> Result<Tx<'_, D>> {
        let rename = rename.then(|| self.rename_lock.lock());
        loop {
            let slot = self.barrier.enter();
            let capacity = self.journal_capacity.load(Ordering::SeqCst);
            if capacity == 0 || self.check_writable().is_err() {
                return Ok(Tx::update(self, slot, 0, rename, defer_misses));
            }
            let credits = credits.min(capacity / 2);
            let reserved = self.reserved.0.fetch_add(credits, Ordering::SeqCst) + credits;
            if self.logged() + reserved <= capacity {
                return Ok(Tx::update(self, slot, credits, rename, defer_misses));
            }
            self.release_credits(credits);
            self.barrier.leave(slot);
            if self.has_changes() {
                self.commit(now)?;
            } else {
                // Others' reservations fill the journal: wait for them.
                relax();
            }
        }
    }

    /// A transaction that runs alone, with the whole journal: the barrier
    /// is closed (no other change runs meanwhile) and the running
    /// transaction committed first. For the rare operation that needs
    /// more than an operation's credits.
    pub fn begin_exclusive(&self, now: u32) -> Result<Tx<'_, D>> {
        let rename = self.rename_lock.lock();
        let mut gate = self.commit.lock();
        self.barrier.close();
        if let Err(error) = self.commit_closed(&mut gate, now) {
            self.barrier.open();
            return Err(error);
        }
        Ok(Tx::exclusive(self, rename, gate))
    }

    /// Buffers for a transaction run by thread slot `slot`.
    pub(crate) fn take_buffers(&self, slot: usize) -> TxBuffers {
        self.buffers[slot].0.lock().pop().unwrap_or_default()
    }

    pub(crate) fn return_buffers(&self, slot: usize, mut buffers: TxBuffers) {
        buffers.clear();
        let mut kept = self.buffers[slot].0.lock();
        if kept.len() < 2 {
            kept.push(buffers);
        }
    }

    pub(crate) fn release_credits(&self, credits: usize) {
        if credits > 0 {
            self.reserved.0.fetch_sub(credits, Ordering::SeqCst);
        }
    }

    /// Metadata blocks the running transaction will log at commit: dirty
    /// metadata, the bitmap blocks its pending frees will clear, block 0.
    pub fn logged(&self) -> usize {
        self.store.cache().dirty_metadata_blocks() + self.pending_bitmap_blocks.0.load(Ordering::Relaxed) + 1
    }

    /// Journal blocks that neither the running transaction nor the
    /// operations in progress other than one holding `credits` have
    /// taken or reserved: what that operation may use beyond its own
    /// credits. Unbounded on a plain image.
    pub fn journal_room(&self, credits: usize) -> usize {
        let capacity = self.journal_capacity.load(Ordering::SeqCst);
        if capacity == 0 {
            return usize::MAX;
        }
        let others = self.reserved.0.load(Ordering::SeqCst).saturating_sub(credits);
        capacity.saturating_sub(self.logged() + others)
    }

    /// Whether the running transaction has anything to commit.
    pub fn has_changes(&self) -> bool {
        self.head_changed.load(Ordering::Relaxed)
            || self.pending_blocks() > 0
            || self.store.cache().dirty_blocks() > 0
    }

    /// Notes a block the running transaction allocated (with a journal).
    pub(crate) fn note_allocated(&self, block: u32) {
        self.pending_shard(block).allocated.insert(block);
    }

    /// Forgets `note_allocated` of a block given back by a rollback.
    pub(crate) fn forget_allocated(&self, block: u32) {
        self.pending_shard(block).allocated.remove(&block);
    }

    /// The pending-frees shard of `block`: its bitmap block's.
    fn pending_index(&self, block: u32) -> usize {
        self.geometry.bitmap_location(block).0 as usize % PENDING_SHARDS
    }

    fn pending_shard(&self, block: u32) -> crate::sync::MutexGuard<'_, PendingFrees> {
        self.pending[self.pending_index(block)].0.lock()
    }

    /// Adds blocks an operation freed to the pending frees, if the journal
    /// has room for the bitmap blocks that adds (`room`, asked only when
    /// it adds any): returns how many it added, or `None` without room.
    /// Blocks the running transaction allocated go to `at_once` instead,
    /// for the caller to free now (`free_at_once`). A block already
    /// pending is freed twice: corruption.
    pub(crate) fn add_pending_frees(
        &self,
        blocks: &[u32],
        room: impl FnOnce() -> usize,
        at_once: &mut Vec<u32>,
    ) -> Result<Option<usize>> {
        debug_assert!(blocks.windows(2).all(|pair| pair[0] < pair[1]), "frees come sorted");
        let bitmap_block = |block: u32| self.geometry.bitmap_location(block).0;
        let shard_of = |block: u32| self.pending_index(block);
        // The shards these blocks fall in, locked in index order (most
        // often one: an operation's frees share a bitmap block).
        let mut wanted = [false; PENDING_SHARDS];
        for &block in blocks {
            wanted[shard_of(block)] = true;
        }
        let mut guards: [Option<crate::sync::MutexGuard<'_, PendingFrees>>; PENDING_SHARDS] =
            Default::default();
        for (index, guard) in guards.iter_mut().enumerate() {
            if wanted[index] {
                *guard = Some(self.pending[index].0.lock());
            }
        }
        if let Some(&twice) = blocks
            .iter()
            .find(|&&block| guards[shard_of(block)].as_ref().is_some_and(|pending| pending.contains(block)))
        {
            return Err(Error::corrupt(crate::error::Corruption::DoubleFree(twice), None, Some(twice)));
        }
        let allocated_here = |block: u32| {
            guards[shard_of(block)].as_ref().is_some_and(|pending| pending.allocated.contains(&block))
        };
        // Distinct bitmap blocks (the frees are sorted, so they come in
        // runs) that no pending free touches yet. Freeing at once changes
        // only bitmap blocks the transaction already holds.
        let mut new = 0;
        let mut last = None;
        for &block in blocks.iter().filter(|&&block| !allocated_here(block)) {
            let bitmap = bitmap_block(block);
            if last != Some(bitmap)
                && guards[shard_of(block)].as_ref().is_some_and(|pending| !pending.touches(bitmap))
            {
                new += 1;
            }
            last = Some(bitmap);
        }
        if new > 0 && new > room() {
            return Ok(None);
        }
        for &block in blocks {
            if let Some(pending) = guards[shard_of(block)].as_mut() {
                if pending.allocated.remove(&block) {
                    at_once.push(block);
                } else {
                    pending.insert(block, bitmap_block(block));
                }
            }
        }
        if new > 0 {
            self.pending_bitmap_blocks.0.fetch_add(new, Ordering::Relaxed);
        }
        Ok(Some(new))
    }

    /// Frees blocks now, returning how many it freed: on an image without
    /// a journal, every block an operation freed; with one, those the
    /// running transaction allocated. Their bitmap blocks are in memory
    /// (pinned when the blocks were freed, or dirty in the running
    /// transaction), so nothing here reads the device or fails.
    pub(crate) fn free_at_once(&self, blocks: &[u32]) -> i64 {
        if blocks.is_empty() {
            return 0;
        }
        let change = Change { kind: BlockKind::Metadata, fill: Fill::Read, pin: false, snapshot: false };
        let mut freed = 0;
        for &block in blocks {
            let (bitmap_block, bit) = self.geometry.bitmap_location(block);
            let mask = 1u8 << (bit % 8);
            let cleared = self.store.modify(bitmap_block, change, |bytes| {
                let byte = &mut bytes[(bit / 8) as usize];
                let was_set = *byte & mask != 0;
                *byte &= !mask;
                was_set
            });
            // A bit already clear was freed by someone else too: counting
            // it again would inflate the free count.
            if matches!(cleared, Ok((true, _))) {
                freed += 1;
            }
        }
        self.note_head_changed();
        freed
    }

    /// Blocks the running transaction has freed.
    fn pending_blocks(&self) -> usize {
        self.pending.iter().map(|shard| shard.0.lock().len()).sum()
    }

    /// Commits landed since mount (see `Tx::space_freed_since_begin`).
    pub fn commits_landed(&self) -> u64 {
        self.landed.0.load(Ordering::SeqCst)
    }

    /// Blocks freed but not yet free: by the running transaction, and by
    /// the commit being written.
    pub fn frees_awaiting_commit(&self) -> usize {
        self.pending_blocks() + self.landing_frees.0.load(Ordering::Relaxed)
    }

    // ---- commits ------------------------------------------------------------

    /// Makes every change durable: with a journal, as one transaction
    /// (see `journal`); without, by writing every dirty block and flushing.
    /// Writes only dirty blocks, plus block 0 when anything changed.
    /// Returns the number of home blocks written. A failure part-way
    /// aborts the volume (read-only from then on): the device holds the
    /// last committed state, or this one once the journal is replayed.
    ///
    /// Operations wait only while the transaction is frozen, not while
    /// it is written; commits wait for each other (the gate).
    pub fn commit(&self, now: u32) -> Result<usize> {
        let mut gate = self.commit.lock();
        self.barrier.close();
        let frozen = self.freeze(&gate, now);
        self.barrier.open();
        self.write_and_land(&mut gate, frozen)
    }

    /// `commit`, unless one is being made already (then it does nothing).
    pub fn commit_if_idle(&self, now: u32) -> Result<usize> {
        let Some(mut gate) = self.commit.try_lock() else { return Ok(0) };
        self.barrier.close();
        let frozen = self.freeze(&gate, now);
        self.barrier.open();
        self.write_and_land(&mut gate, frozen)
    }

    /// `commit` by the holder of the gate who has closed the barrier.
    pub(crate) fn commit_closed(&self, gate: &mut CommitState, now: u32) -> Result<usize> {
        let frozen = self.freeze(gate, now);
        self.write_and_land(gate, frozen)
    }

    /// Writes every dirty block that may go home (file data; metadata too
    /// on a plain image) and drops clean blocks past the cache's budget:
    /// the cache's relief between commits. Skipped while a commit runs
    /// (it relieves the cache itself).
    pub fn write_back(&self) -> Result<usize> {
        let Some(_gate) = self.commit.try_lock() else { return Ok(0) };
        let written = self.store.write_back(false)?;
        self.store.shrink_to_budget();
        Ok(written)
    }

    /// Takes the running transaction for a commit; `None` when there is
    /// nothing to commit or nothing may be written. No operation may be
    /// inside the barrier.
    ///
    /// The blocks the transaction freed are free in the frozen bitmap and
    /// superblock copies only: the live bitmap keeps them allocated until
    /// the commit lands, so nothing reuses (and overwrites) a block that a
    /// crash before then would give back to its old owner.
    fn freeze(&self, gate: &CommitState, now: u32) -> Result<Option<(Frozen, BTreeSet<u32>)>> {
        if self.is_read_only() {
            return Ok(None);
        }
        self.check_writable()?;
        if !self.has_changes() {
            return Ok(None);
        }
        let mut taken = Vec::new();
        for shard in self.pending.iter() {
            let mut shard = shard.0.lock();
            // Counted as landing before they leave the pending set, so they
            // are always seen awaiting a commit (see `frees_awaiting_commit`).
            self.landing_frees.0.fetch_add(shard.len(), Ordering::SeqCst);
            shard.take_into(&mut taken);
        }
        // Built whole from the list (sorted once), not block by block.
        let frees: BTreeSet<u32> = taken.into_iter().collect();
        self.pending_bitmap_blocks.0.store(0, Ordering::Relaxed);
        self.head.lock().superblock.write_time = now as u64;
        let frozen = self.store_superblock().and_then(|()| {
            let (data, metadata) = self.store.freeze();
            let mut frozen = Frozen::new(data, metadata, gate.journal.clone());
            self.free_in_frozen(&mut frozen, &frees)?;
            Ok(frozen)
        });
        match frozen {
            Ok(frozen) => Ok(Some((frozen, frees))),
            Err(error) => {
                // The cache has handed its dirty blocks over: there is no
                // way back to a running transaction.
                self.store.abort();
                self.landing_frees.0.store(0, Ordering::SeqCst);
                Err(error)
            }
        }
    }

    /// Clears the bits of `frees` in the frozen bitmap and counts them in
    /// the frozen superblock.
    fn free_in_frozen(&self, frozen: &mut Frozen, frees: &BTreeSet<u32>) -> Result<()> {
        if frees.is_empty() {
            return Ok(());
        }
        for &block in frees {
            let (bitmap_block, bit) = self.geometry.bitmap_location(block);
            if frozen.metadata_mut(bitmap_block).is_none() {
                let copy = self.store.read(bitmap_block, |bytes| Box::new(*bytes))?;
                self.store.hold_in_flight(bitmap_block);
                frozen.add_metadata(bitmap_block, copy);
            }
            let bytes = frozen.metadata_mut(bitmap_block).expect("added above");
            bytes[(bit / 8) as usize] &= !(1u8 << (bit % 8));
        }
        let mut superblock = self.superblock();
        superblock.free_blocks += frees.len() as u32;
        let extension = self.extension();
        let block0 = frozen.metadata_mut(0).expect("block 0 is stored at every commit");
        encode_block0(&superblock, extension.as_ref(), block0);
        Ok(())
    }

    /// Writes a frozen transaction and lands it: its blocks become
    /// ordinary cache blocks and its frees free. After a failed write the
    /// volume is aborted and this returns the error.
    fn write_and_land(
        &self,
        gate: &mut CommitState,
        frozen: Result<Option<(Frozen, BTreeSet<u32>)>>,
    ) -> Result<usize> {
        let Some((mut frozen, frees)) = frozen? else { return Ok(0) };
        let written = match frozen.write(&*self.store.shared_device()) {
            Ok(written) => written,
            Err(error) => {
                self.store.abort();
                self.landing_frees.0.store(0, Ordering::Relaxed);
                return Err(error);
            }
        };
        gate.journal = frozen.journal().cloned();
        for &block in &frees {
            let (bitmap_block, bit) = self.geometry.bitmap_location(block);
            self.store.patch(bitmap_block, |bytes| bytes[(bit / 8) as usize] &= !(1u8 << (bit % 8)));
        }
        self.allocator.count(thread_slot(), frees.len() as i64, 0);
        // Free now: an operation that ran out of space meanwhile sees
        // either the frees still landing or a commit landed since it began.
        self.landed.0.fetch_add(1, Ordering::SeqCst);
        self.landing_frees.0.store(0, Ordering::SeqCst);
        self.store.land(frozen.blocks());
        self.store.shrink_to_budget();
        Ok(written)
    }

    /// The running transaction against what bounds it, or `None` when
    /// nothing needs it committed early (a plain or unwritable image):
    /// (logged, journal capacity, cache capacity, cache overflow).
    fn transaction_size(&self) -> Option<(usize, usize, usize, usize)> {
        let journal = self.journal_capacity.load(Ordering::Relaxed);
        if journal == 0 || self.check_writable().is_err() {
            return None;
        }
        let cache = self.store.cache();
        Some((self.logged(), journal, cache.capacity(), cache.overflow()))
    }

    /// Whether the running transaction should commit at the next operation
    /// boundary: the journal or the cache budget is half used by it, or
    /// the blocks it freed are three times those still free (committing
    /// them before the space runs out lets the other threads go on while
    /// one commits, instead of all of them waiting for it).
    pub fn commit_due(&self) -> bool {
        self.transaction_size().is_some_and(|(logged, journal, cache, overflow)| {
            logged * 2 >= journal || overflow > 0 || logged * 2 >= cache || self.frees_crowd_free_space()
        })
    }

    /// Whether pending frees are three times the free blocks. Counting
    /// both takes a lock per pending-frees shard, so each thread slot does
    /// it only every `SPACE_CHECK_INTERVAL` operations.
    fn frees_crowd_free_space(&self) -> bool {
        let tick = self.space_checks[thread_slot()].0.fetch_add(1, Ordering::Relaxed);
        if tick % SPACE_CHECK_INTERVAL != 0 {
            return false;
        }
        let pending = self.pending_blocks();
        pending > 0 && pending as u64 >= 3 * self.allocator.free_blocks() as u64
    }

    /// Whether the running transaction must commit at the next operation
    /// boundary even when a helper thread was asked to commit it: it holds
    /// three quarters of the journal, or pins three quarters of the cache
    /// budget, or half again the budget is in use.
    pub fn commit_urgent(&self) -> bool {
        self.transaction_size().is_some_and(|(logged, journal, cache, overflow)| {
            logged * 4 >= journal * 3 || logged * 4 >= cache * 3 || overflow * 2 >= cache
        })
    }

    /// Whether the cache holds more than its budget while nothing but a
    /// write-back can relieve it (an image without a journal).
    pub fn needs_write_back(&self) -> bool {
        self.journal_capacity.load(Ordering::Relaxed) == 0 && self.store.cache().overflow() > 0
    }

    /// Reads `block` from the device with no lock held and caches it,
    /// unless it may have changed at home meanwhile. Returns whether the
    /// read succeeded.
    pub fn load_unlocked(&self, block: u32) -> bool {
        let version = self.store.home_version();
        let mut data = crate::cache::zeroed_block();
        let read = self.store.device().read_block(block, &mut data).is_ok();
        if read {
            let _ = self.store.insert_clean(block, data, version);
        }
        read
    }
}
