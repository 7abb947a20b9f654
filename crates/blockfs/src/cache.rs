//! A bounded write-back block cache that several threads use at once.
//!
//! The cache is split into shards by block number, each behind a lock of
//! its own that is held only to look a block up and read or change its
//! bytes: never across device I/O. A miss lets the shard go, reads the
//! block, and caches it only if nothing may have written that block home
//! meanwhile (see `BlockCache::home_version`). Each shard evicts by the
//! clock algorithm (a reference bit per slot, a hand sweeping the slots),
//! so hits cost a hash lookup and no list surgery. Eviction only ever
//! takes a clean slot: dirty blocks go home in block order, neighbours
//! coalesced, when the caller writes back (`BlockCache::write_back`), so
//! a shard may briefly hold more than its share until then.
//!
//! Each dirty block is either file data or metadata. With a journal,
//! dirty metadata is pinned: it may reach its home location only after the
//! transaction holding it has committed, so write-back passes over it.
//!
//! Operations in progress pin the blocks they change (`Change::pin`):
//! a pinned block is neither evicted nor written home, so a failed
//! operation can restore what it changed in place, and a crash never
//! finds half an operation at home. The cache does not know which
//! operation changed what: the caller (`tx`) keeps the undo log, with a
//! block's prior contents (`Change::snapshot`) where only it changes the
//! block, or just the bytes it changed where others change the same block.
//!
//! Commit in flight: `BlockCache::freeze` hands a committing
//! transaction copies of every dirty block and marks their slots in
//! flight until `BlockCache::land`. While the commit writes, those slots
//! stay resident (so nobody reads the stale home copy) and are never
//! written home (a newer version written there could be overwritten by the
//! commit's older one); they may change again as part of the next
//! transaction.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashMap;

use crate::device::{write_runs, BlockDevice};
use crate::error::DeviceError;
use crate::format::{Block, BLOCK_SIZE};
use crate::sync::{Mutex, MutexGuard, Padded};

/// Copies of blocks, with their numbers, in block order.
pub type BlockCopies = Vec<(u32, Box<Block>)>;

/// The smallest budget that lets every operation hold the blocks it needs
/// at once (an inode-table block, indirect blocks and a data block).
pub const MIN_CACHE_BLOCKS: usize = 8;
/// Blocks per shard the cache aims for: few in a large cache, more in a
/// small one (a shard full of pinned blocks holds more than its share),
/// and a small cache is one shard.
const SHARD_BLOCKS: usize = 16;
const SMALL_CACHE_SHARD_BLOCKS: usize = 64;
const SMALL_CACHE: usize = 1024;
/// Many shards, so that the few blocks every operation of a thread uses
/// (its directory's, its inodes', a bitmap block) seldom share a shard
/// with another thread's.
const MAX_SHARDS: usize = 256;
/// Misses read without the shard lock before one reads holding it (the
/// block kept being written home meanwhile).
const UNLOCKED_READ_ATTEMPTS: u32 = 3;
/// Data-area blocks share a shard in aligned runs of `1 << RUN_SHIFT`:
/// a thread writing new files takes consecutive blocks of its own region
/// (see `allocator`), and finds the shard it used for the last ones still
/// in its core's cache instead of a new one another core touched last.
const RUN_SHIFT: u32 = 3;

/// What a dirty block holds, which decides when it may be written home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// File contents: may be written home at any time (ordered mode only
    /// requires it to be home before the commit that makes it reachable).
    Data,
    /// Superblock, bitmap, inode table, directory and indirect blocks.
    Metadata,
}

/// What the cache held for a block before an operation first changed it.
pub(crate) enum Prior {
    /// Not cached: the device holds the block's current contents.
    Absent,
    Cached {
        data: Box<Block>,
        dirty: Option<BlockKind>,
    },
}

/// What a block to change starts as, when it is not cached.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Its contents, read from the device.
    Read,
    /// Nothing: a miss is reported (`modify` returns `None`), not read.
    Cached,
    /// Zeros, cached or not: the caller writes what it needs.
    Zero,
    /// Anything, cached or not: the caller writes the whole block.
    Whole,
}

/// How [`BlockCache::modify`] is to change a block.
#[derive(Clone, Copy)]
pub(crate) struct Change {
    pub kind: BlockKind,
    pub fill: Fill,
    /// Pin the block: the caller's first change to it in an operation.
    pub pin: bool,
    /// Return the block's prior state.
    pub snapshot: bool,
}

/// What [`BlockCache::modify`] did besides the change.
pub(crate) struct Changed {
    /// The block became dirty metadata (it counts against the journal).
    pub new_metadata: bool,
    /// Its prior state, when asked for.
    pub prior: Option<Prior>,
}

struct Slot {
    block: u32,
    data: Box<Block>,
    /// `Some` when the block differs from the device.
    dirty: Option<BlockKind>,
    referenced: bool,
    /// Operations in progress that changed it.
    pins: u32,
    /// Its contents as of the committing transaction are being written
    /// home: resident, and not written back, until that commit lands.
    in_flight: bool,
    /// Changes so far, so a write-back can tell whether the block changed
    /// while its copy was being written.
    changes: u32,
}

impl Slot {
    /// A clean, just-referenced slot holding `data`.
    fn new(block: u32, data: Box<Block>) -> Self {
        Slot { block, data, dirty: None, referenced: true, pins: 0, in_flight: false, changes: 0 }
    }
}

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub blocks_read: u64,
    pub blocks_written: u64,
}

impl CacheStats {
    fn add(&mut self, other: &CacheStats) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.blocks_read += other.blocks_read;
        self.blocks_written += other.blocks_written;
    }
}

struct Shard {
    slots: Vec<Slot>,
    index: HashMap<u32, usize>,
    hand: usize,
    capacity: usize,
    dirty: usize,
    stats: CacheStats,
}

pub(crate) struct BlockCache {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// log2 of the number of shards.
    shard_bits: u32,
    /// Blocks from here on (the data area) share a shard with their run's
    /// neighbours; the metadata before it, where neighbours belong to
    /// different threads' groups (bitmap blocks, inode-table blocks), is
    /// spread block by block.
    runs_from: u32,
    capacity: usize,
    /// Keep dirty metadata until the journal commits it.
    pin_metadata: AtomicBool,
    /// Dirty metadata blocks, all shards: what the running transaction
    /// logs, read by every operation, changed only when a block's state
    /// changes. The counters written as operations go each have a cache
    /// line of their own, away from the fields every lookup reads.
    dirty_metadata: Padded<AtomicUsize>,
    /// Slots held beyond the shards' budgets.
    overflow: Padded<AtomicUsize>,
    home_version: Padded<AtomicU64>,
}

pub(crate) fn zeroed_block() -> Box<Block> {
    // Built on the heap directly: a 4 KiB array on a kernel stack is unwelcome.
    alloc::vec![0u8; BLOCK_SIZE].into_boxed_slice().try_into().expect("exactly one block")
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
            capacity,
            dirty: 0,
            stats: CacheStats::default(),
        }
    }

    fn find(&mut self, block: u32) -> Option<usize> {
        let slot = *self.index.get(&block)?;
        self.stats.hits += 1;
        self.slots[slot].referenced = true;
        Some(slot)
    }

    fn is_pinned(&self, slot: usize, pin_metadata: bool) -> bool {
        let slot = &self.slots[slot];
        slot.pins > 0 || slot.in_flight || (pin_metadata && slot.dirty == Some(BlockKind::Metadata))
    }

    /// A clean slot to reuse, or `None`: every slot is dirty or pinned.
    fn choose_victim(&mut self) -> Option<usize> {
        // Two sweeps suffice: the first clears every reference bit.
        for _ in 0..2 * self.slots.len() {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let entry = &mut self.slots[slot];
            if entry.pins > 0 || entry.in_flight || entry.dirty.is_some() {
                continue;
            }
            if entry.referenced {
                entry.referenced = false;
            } else {
                return Some(slot);
            }
        }
        None
    }

    /// Caches `data` as `block` (absent): in a clean victim's slot, or a
    /// new one. Returns the slot and whether the shard grew past its
    /// budget.
    fn insert(&mut self, block: u32, data: Box<Block>) -> (usize, bool) {
        let victim = if self.slots.len() < self.capacity { None } else { self.choose_victim() };
        let slot = match victim {
            Some(victim) => {
                let old = self.slots[victim].block;
                self.index.remove(&old);
                self.slots[victim] = Slot::new(block, data);
                victim
            }
            None => {
                self.slots.push(Slot::new(block, data));
                self.slots.len() - 1
            }
        };
        self.index.insert(block, slot);
        (slot, victim.is_none() && self.slots.len() > self.capacity)
    }

    /// Caches `block` (absent) with contents to be overwritten, in a
    /// clean victim's slot and buffer if there is one.
    fn insert_for_overwrite(&mut self, block: u32) -> (usize, bool) {
        if self.slots.len() >= self.capacity {
            if let Some(victim) = self.choose_victim() {
                let old = self.slots[victim].block;
                self.index.remove(&old);
                self.index.insert(block, victim);
                // A victim is clean, unpinned and not in flight already.
                let entry = &mut self.slots[victim];
                entry.block = block;
                entry.referenced = true;
                return (victim, false);
            }
        }
        self.insert(block, zeroed_block())
    }

    /// Removes a slot, keeping the vector dense; returns it and whether
    /// the shard was over its budget.
    fn remove(&mut self, slot: usize) -> (Slot, bool) {
        let over = self.slots.len() > self.capacity;
        let removed = self.slots.swap_remove(slot);
        self.index.remove(&removed.block);
        if slot < self.slots.len() {
            let moved = self.slots[slot].block;
            self.index.insert(moved, slot);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        if removed.dirty.is_some() {
            self.dirty -= 1;
        }
        (removed, over)
    }
}

impl BlockCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(MIN_CACHE_BLOCKS);
        let per_shard = if capacity < SMALL_CACHE { SMALL_CACHE_SHARD_BLOCKS } else { SHARD_BLOCKS };
        let shards = (capacity / per_shard).clamp(1, MAX_SHARDS);
        // A power of two, so the shard is a mask of the block number.
        let shards = if shards.is_power_of_two() { shards } else { shards.next_power_of_two() / 2 };
        let per_shard = capacity.div_ceil(shards);
        BlockCache {
            shards: (0..shards).map(|_| Padded(Mutex::new(Shard::new(per_shard)))).collect(),
            shard_bits: shards.trailing_zeros(),
            runs_from: u32::MAX,
            capacity,
            pin_metadata: AtomicBool::new(false),
            dirty_metadata: Padded(AtomicUsize::new(0)),
            overflow: Padded(AtomicUsize::new(0)),
            home_version: Padded(AtomicU64::new(0)),
        }
    }

    fn shard(&self, block: u32) -> MutexGuard<'_, Shard> {
        // Fibonacci hashing: neighbouring blocks (or runs), and blocks a
        // power of two apart, land in different shards.
        let index = match self.shard_bits {
            0 => 0,
            bits => {
                let key = if block >= self.runs_from { block >> RUN_SHIFT } else { block };
                (key.wrapping_mul(0x9E37_79B9) >> (32 - bits)) as usize
            }
        };
        self.shards[index].0.lock()
    }

    /// Keeps runs of blocks from `block` on in one shard (`RUN_SHIFT`).
    pub fn with_runs_from(mut self, block: u32) -> Self {
        self.runs_from = block;
        self
    }

    /// With a journal, dirty metadata stays in memory until committed.
    pub fn set_pin_metadata(&self, pin: bool) {
        self.pin_metadata.store(pin, Ordering::Relaxed);
    }

    pub fn dirty_metadata_blocks(&self) -> usize {
        self.dirty_metadata.0.load(Ordering::Relaxed)
    }

    /// Blocks held beyond the budget (pinned or dirty, awaiting a commit
    /// or a write-back).
    pub fn overflow(&self) -> usize {
        self.overflow.0.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for shard in self.shards.iter() {
            total.add(&shard.0.lock().stats);
        }
        total
    }

    pub fn dirty_blocks(&self) -> usize {
        self.shards.iter().map(|shard| shard.0.lock().dirty).sum()
    }

    pub fn is_cached(&self, block: u32) -> bool {
        self.shard(block).index.contains_key(&block)
    }

    /// A number that changes whenever a block the cache lacks may have
    /// changed on the device: it moves before every write home (a
    /// write-back, a fresh-data write, a commit frozen or landed) of
    /// blocks that stay cached until the write is done, so a block read
    /// from the device without a lock is current if this number is the
    /// same before and after the read.
    pub fn home_version(&self) -> u64 {
        self.home_version.0.load(Ordering::SeqCst)
    }

    /// Notes a write home that the cache does not make itself.
    pub fn note_home_write(&self) {
        self.home_version.0.fetch_add(1, Ordering::SeqCst);
    }

    fn note_overflow(&self, grew: bool) {
        if grew {
            self.overflow.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn note_removed(&self, was_over: bool) {
        if was_over {
            self.overflow.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs `f` on a cached block; `None` when it is not cached.
    pub fn peek<R>(&self, block: u32, f: impl FnOnce(&Block) -> R) -> Option<R> {
        let mut shard = self.shard(block);
        let slot = shard.find(block)?;
        Some(f(&shard.slots[slot].data))
    }

    /// Runs `f` on the block's contents, read from the device on a miss.
    pub fn read<D: BlockDevice + ?Sized, R>(
        &self,
        device: &D,
        block: u32,
        f: impl FnOnce(&Block) -> R,
    ) -> Result<R, DeviceError> {
        let (shard, slot, _) = self.load(device, block)?;
        Ok(f(&shard.slots[slot].data))
    }

    /// The shard holding `block`, locked, with the block's slot: read
    /// from the device on a miss, with the shard let go during the read.
    /// Also returns whether this call cached it.
    fn load<D: BlockDevice + ?Sized>(
        &self,
        device: &D,
        block: u32,
    ) -> Result<(MutexGuard<'_, Shard>, usize, bool), DeviceError> {
        let mut attempts = 0;
        loop {
            let mut shard = self.shard(block);
            if let Some(slot) = shard.find(block) {
                return Ok((shard, slot, false));
            }
            shard.stats.misses += 1;
            let mut data = zeroed_block();
            if attempts == UNLOCKED_READ_ATTEMPTS {
                // The block kept changing at home: read it holding the
                // shard, which nothing writes home around.
                device.read_block(block, &mut data)?;
            } else {
                let version = self.home_version();
                drop(shard);
                device.read_block(block, &mut data)?;
                shard = self.shard(block);
                if let Some(slot) = shard.find(block) {
                    // Cached meanwhile: that copy is at least as new.
                    return Ok((shard, slot, false));
                }
                if self.home_version() != version {
                    attempts += 1;
                    continue;
                }
            }
            shard.stats.blocks_read += 1;
            let (slot, grew) = shard.insert(block, data);
            self.note_overflow(grew);
            return Ok((shard, slot, true));
        }
    }

    /// Caches `data` as `block`'s clean contents, read from the device
    /// without a lock while [`BlockCache::home_version`] was `version`.
    /// A block cached meanwhile keeps what it has (at least as new), and
    /// if the version moved the read is thrown away. Returns whether the
    /// block is cached now.
    pub fn insert_clean(&self, block: u32, data: Box<Block>, version: u64) -> bool {
        let mut shard = self.shard(block);
        if shard.index.contains_key(&block) {
            return true;
        }
        if self.home_version() != version {
            return false;
        }
        shard.stats.blocks_read += 1;
        let (_, grew) = shard.insert(block, data);
        self.note_overflow(grew);
        true
    }

    /// Changes a block: `f` gets its bytes (as [`Change::fill`] says),
    /// and the block becomes dirty as `kind`. `None` only for a miss with
    /// `Fill::Cached`.
    pub fn modify<D: BlockDevice + ?Sized, R>(
        &self,
        device: &D,
        block: u32,
        change: Change,
        f: impl FnOnce(&mut Block) -> R,
    ) -> Result<Option<(R, Changed)>, DeviceError> {
        let (mut shard, slot, just_cached) = match change.fill {
            Fill::Read => self.load(device, block)?,
            fill => {
                let mut shard = self.shard(block);
                match shard.find(block) {
                    Some(slot) => (shard, slot, false),
                    None if fill == Fill::Cached => return Ok(None),
                    None => {
                        shard.stats.misses += 1;
                        let (slot, grew) = shard.insert_for_overwrite(block);
                        self.note_overflow(grew);
                        (shard, slot, true)
                    }
                }
            }
        };
        let shard = &mut *shard;
        let entry = &mut shard.slots[slot];
        let prior = change.snapshot.then(|| match just_cached {
            // Clean and as the device holds it: nothing to keep.
            true => Prior::Absent,
            false => Prior::Cached { data: entry.data.clone(), dirty: entry.dirty },
        });
        if change.pin {
            entry.pins += 1;
        }
        if change.fill == Fill::Zero {
            entry.data.fill(0);
        }
        entry.changes = entry.changes.wrapping_add(1);
        let before = entry.dirty;
        let value = f(&mut entry.data);
        let new_metadata = self.mark_dirty(shard, slot, before, change.kind);
        Ok(Some((value, Changed { new_metadata, prior })))
    }

    /// Marks a slot dirty as `kind`. Metadata wins: a block changed as
    /// metadata stays metadata until written, even if later touched as
    /// data. Returns whether it became dirty metadata.
    fn mark_dirty(&self, shard: &mut Shard, slot: usize, before: Option<BlockKind>, kind: BlockKind) -> bool {
        let after = match (before, kind) {
            (None, kind) => kind,
            (Some(BlockKind::Data), BlockKind::Metadata) => BlockKind::Metadata,
            (Some(dirty), _) => dirty,
        };
        if before.is_none() {
            shard.dirty += 1;
        }
        shard.slots[slot].dirty = Some(after);
        let new_metadata = after == BlockKind::Metadata && before != Some(BlockKind::Metadata);
        if new_metadata {
            self.dirty_metadata.0.fetch_add(1, Ordering::Relaxed);
        }
        new_metadata
    }

    fn clear_dirty(&self, shard: &mut Shard, slot: usize) {
        match shard.slots[slot].dirty.take() {
            Some(BlockKind::Metadata) => {
                shard.dirty -= 1;
                self.dirty_metadata.0.fetch_sub(1, Ordering::Relaxed);
            }
            Some(BlockKind::Data) => shard.dirty -= 1,
            None => {}
        }
    }

    /// Pins a block without changing it, reading it first on a miss: a
    /// block the caller will change later and must then find resident.
    pub fn pin<D: BlockDevice + ?Sized>(&self, device: &D, block: u32) -> Result<(), DeviceError> {
        let (mut shard, slot, _) = self.load(device, block)?;
        shard.slots[slot].pins += 1;
        Ok(())
    }

    /// Ends one operation's pin of a block.
    pub fn unpin(&self, block: u32) {
        let mut shard = self.shard(block);
        if let Some(&slot) = shard.index.get(&block) {
            let entry = &mut shard.slots[slot];
            entry.pins = entry.pins.saturating_sub(1);
        }
    }

    /// Puts back a block's prior state (a rolled-back operation's).
    pub fn restore(&self, block: u32, prior: Prior) {
        let mut shard = self.shard(block);
        let shard = &mut *shard;
        let present = shard.index.get(&block).copied();
        match prior {
            Prior::Absent => {
                if let Some(slot) = present {
                    self.clear_dirty(shard, slot);
                    let (_, over) = shard.remove(slot);
                    self.note_removed(over);
                }
            }
            Prior::Cached { data, dirty } => {
                let slot = match present {
                    Some(slot) => {
                        self.clear_dirty(shard, slot);
                        shard.slots[slot].data = data;
                        slot
                    }
                    None => {
                        let (slot, grew) = shard.insert(block, data);
                        self.note_overflow(grew);
                        slot
                    }
                };
                shard.slots[slot].changes = shard.slots[slot].changes.wrapping_add(1);
                if let Some(kind) = dirty {
                    self.mark_dirty(shard, slot, None, kind);
                }
            }
        }
    }

    /// Changes a cached block's bytes, leaving its dirty state alone: the
    /// device already holds the result (a landed commit's frees), or the
    /// block is pinned and dirty (a rollback of some of its bytes).
    pub fn patch(&self, block: u32, change: impl FnOnce(&mut Block)) {
        let mut shard = self.shard(block);
        if let Some(&slot) = shard.index.get(&block) {
            let entry = &mut shard.slots[slot];
            entry.changes = entry.changes.wrapping_add(1);
            change(&mut entry.data);
        }
    }

    /// Drops a freed block without writing it back. Returns its prior
    /// state when `snapshot` (for the operation's undo). A block in flight
    /// keeps its slot, clean, until its commit lands: the device does not
    /// hold it yet.
    pub fn discard(&self, block: u32, snapshot: bool) -> Option<Prior> {
        let mut shard = self.shard(block);
        let shard = &mut *shard;
        let Some(&slot) = shard.index.get(&block) else {
            return snapshot.then_some(Prior::Absent);
        };
        let dirty = shard.slots[slot].dirty;
        self.clear_dirty(shard, slot);
        if shard.slots[slot].in_flight {
            let entry = &mut shard.slots[slot];
            entry.changes = entry.changes.wrapping_add(1);
            return snapshot.then(|| Prior::Cached { data: entry.data.clone(), dirty });
        }
        let (removed, over) = shard.remove(slot);
        self.note_removed(over);
        // The slot is gone, so its bytes become the prior state uncopied.
        snapshot.then_some(Prior::Cached { data: removed.data, dirty })
    }

    /// Drops a cached copy of a block the device is about to get new
    /// contents for, outside the cache (a block just allocated).
    pub fn drop_stale(&self, block: u32) {
        let mut shard = self.shard(block);
        let shard = &mut *shard;
        if let Some(&slot) = shard.index.get(&block) {
            debug_assert!(shard.slots[slot].pins == 0, "a block just allocated is changed by nobody");
            self.clear_dirty(shard, slot);
            let (_, over) = shard.remove(slot);
            self.note_removed(over);
        }
    }

    /// Takes the running transaction for a commit: copies of every dirty
    /// block, file data and metadata apart, each in block order. The
    /// slots become clean and in flight (see the module comment). No
    /// operation may be in progress.
    pub fn freeze(&self) -> (BlockCopies, BlockCopies) {
        self.note_home_write();
        let (mut data, mut metadata) = (Vec::new(), Vec::new());
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            let shard = &mut *shard;
            for slot in 0..shard.slots.len() {
                let Some(kind) = shard.slots[slot].dirty else { continue };
                debug_assert!(shard.slots[slot].pins == 0, "commits happen between operations");
                self.clear_dirty(shard, slot);
                let entry = &mut shard.slots[slot];
                entry.in_flight = true;
                let copy = (entry.block, entry.data.clone());
                match kind {
                    BlockKind::Data => data.push(copy),
                    BlockKind::Metadata => metadata.push(copy),
                }
            }
        }
        data.sort_unstable_by_key(|(block, _)| *block);
        metadata.sort_unstable_by_key(|(block, _)| *block);
        (data, metadata)
    }

    /// Holds a cached block in flight (see `freeze`).
    pub fn hold_in_flight(&self, block: u32) {
        let mut shard = self.shard(block);
        if let Some(&slot) = shard.index.get(&block) {
            shard.slots[slot].in_flight = true;
        }
    }

    /// The commit holding `blocks` is home: their slots are ordinary again.
    pub fn land(&self, blocks: impl Iterator<Item = u32>) {
        self.note_home_write();
        for block in blocks {
            let mut shard = self.shard(block);
            if let Some(&slot) = shard.index.get(&block) {
                shard.slots[slot].in_flight = false;
            }
        }
    }

    /// Writes every dirty block that may go home (not pinned, not in
    /// flight, not metadata awaiting the journal), in block order and
    /// coalesced, copying them first so no shard is held during the I/O.
    /// A block changed while its copy was written stays dirty. Does not
    /// flush. Returns the number of blocks written. The caller keeps
    /// commits away meanwhile (a commit's copy of a block and this one
    /// must not race to the device).
    pub fn write_back<D: BlockDevice + ?Sized>(&self, device: &D) -> Result<usize, DeviceError> {
        let pin_metadata = self.pin_metadata.load(Ordering::Relaxed);
        let mut copies: Vec<(u32, Box<Block>, u32)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            if shard.dirty == 0 {
                continue;
            }
            for slot in 0..shard.slots.len() {
                if shard.slots[slot].dirty.is_some() && !shard.is_pinned(slot, pin_metadata) {
                    let entry = &shard.slots[slot];
                    copies.push((entry.block, entry.data.clone(), entry.changes));
                }
            }
        }
        if copies.is_empty() {
            return Ok(0);
        }
        copies.sort_unstable_by_key(|(block, _, _)| *block);
        self.note_home_write();
        let blocks: Vec<(u32, &Block)> = copies.iter().map(|(block, data, _)| (*block, &**data)).collect();
        write_runs(device, &blocks)?;
        for (block, _, changes) in &copies {
            let mut shard = self.shard(*block);
            let shard = &mut *shard;
            shard.stats.blocks_written += 1;
            if let Some(&slot) = shard.index.get(block) {
                if shard.slots[slot].changes == *changes {
                    self.clear_dirty(shard, slot);
                }
            }
        }
        Ok(copies.len())
    }

    /// Drops clean slots beyond each shard's budget.
    pub fn shrink_to_budget(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            while shard.slots.len() > shard.capacity {
                let Some(clean) = shard
                    .slots
                    .iter()
                    .rposition(|slot| slot.dirty.is_none() && slot.pins == 0 && !slot.in_flight)
                else {
                    break;
                };
                let (_, over) = shard.remove(clean);
                self.note_removed(over);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    const DATA: Change = Change { kind: BlockKind::Data, fill: Fill::Read, pin: false, snapshot: false };
    const OVERWRITE: Change = Change { fill: Fill::Zero, ..DATA };
    const METADATA: Change = Change { kind: BlockKind::Metadata, ..DATA };

    fn set(cache: &BlockCache, device: &MemDevice, block: u32, change: Change, value: u8) -> Changed {
        cache.modify(device, block, change, |bytes| bytes[0] = value).unwrap().unwrap().1
    }

    fn first_byte(cache: &BlockCache, device: &MemDevice, block: u32) -> u8 {
        cache.read(device, block, |bytes| bytes[0]).unwrap()
    }

    fn slots(cache: &BlockCache) -> usize {
        cache.shards.iter().map(|shard| shard.0.lock().slots.len()).sum()
    }

    #[test]
    fn small_caches_are_one_shard_and_large_ones_many() {
        assert_eq!(BlockCache::new(MIN_CACHE_BLOCKS).shards.len(), 1);
        assert_eq!(BlockCache::new(100).shards.len(), 1);
        assert_eq!(BlockCache::new(4096).shards.len(), 256);
        assert_eq!(BlockCache::new(1000).shards.len(), 8);
    }

    #[test]
    fn holds_its_budget_once_written_back() {
        let mut device = MemDevice::new(64);
        let cache = BlockCache::new(MIN_CACHE_BLOCKS);
        for block in 0..64u32 {
            set(&cache, &device, block, DATA, block as u8 + 1);
            if slots(&cache) > MIN_CACHE_BLOCKS {
                cache.write_back(&device).unwrap();
                cache.shrink_to_budget();
            }
        }
        cache.write_back(&device).unwrap();
        cache.shrink_to_budget();
        assert_eq!(cache.dirty_blocks(), 0);
        for block in 0..64u32 {
            assert_eq!(device.as_bytes()[block as usize * BLOCK_SIZE], block as u8 + 1);
            assert_eq!(first_byte(&cache, &device, block), block as u8 + 1);
            assert!(slots(&cache) <= MIN_CACHE_BLOCKS);
        }
    }

    #[test]
    fn write_back_writes_only_dirty_blocks() {
        let device = MemDevice::new(16);
        let cache = BlockCache::new(16);
        for block in 0..16 {
            first_byte(&cache, &device, block);
        }
        set(&cache, &device, 3, DATA, 9);
        set(&cache, &device, 4, METADATA, 9);
        let before = cache.stats().blocks_written;
        assert_eq!(cache.write_back(&device).unwrap(), 2);
        assert_eq!(cache.stats().blocks_written - before, 2);
        assert_eq!(cache.write_back(&device).unwrap(), 0);
    }

    #[test]
    fn discarded_blocks_are_not_written() {
        let mut device = MemDevice::new(16);
        let cache = BlockCache::new(16);
        set(&cache, &device, 5, OVERWRITE, 1);
        set(&cache, &device, 6, OVERWRITE, 2);
        assert!(cache.discard(5, false).is_none());
        cache.write_back(&device).unwrap();
        assert_eq!(device.as_bytes()[5 * BLOCK_SIZE], 0);
        assert_eq!(device.as_bytes()[6 * BLOCK_SIZE], 2);
        assert!(!cache.is_cached(5));
        assert_eq!(first_byte(&cache, &device, 6), 2);
    }

    #[test]
    fn pinned_metadata_is_never_written_back_and_data_is() {
        let mut device = MemDevice::new(64);
        let cache = BlockCache::new(MIN_CACHE_BLOCKS);
        cache.set_pin_metadata(true);
        for block in 0..12u32 {
            assert!(set(&cache, &device, block, METADATA, 7).new_metadata);
        }
        assert_eq!(cache.overflow(), 12 - MIN_CACHE_BLOCKS);
        assert_eq!(cache.dirty_metadata_blocks(), 12);
        for block in 20..40u32 {
            set(&cache, &device, block, OVERWRITE, 9);
        }
        cache.write_back(&device).unwrap();
        // Data went home; metadata did not.
        assert_eq!(device.as_bytes()[20 * BLOCK_SIZE], 9);
        assert!((0..12).all(|block| device.as_bytes()[block * BLOCK_SIZE] == 0));
        // A commit takes copies of everything dirty, metadata apart.
        let (data, metadata) = cache.freeze();
        assert!(data.is_empty());
        assert_eq!(
            metadata.iter().map(|(block, _)| *block).collect::<Vec<u32>>(),
            (0..12).collect::<Vec<u32>>()
        );
        assert_eq!((cache.dirty_blocks(), cache.dirty_metadata_blocks()), (0, 0));
        // In flight: resident and never written back, even when changed
        // again, until the commit lands.
        set(&cache, &device, 3, DATA, 8);
        cache.shrink_to_budget();
        assert_eq!(cache.write_back(&device).unwrap(), 0);
        assert!((0..12).all(|block| cache.is_cached(block)));
        cache.land(metadata.iter().map(|(block, _)| *block));
        assert_eq!(cache.write_back(&device).unwrap(), 1);
        assert_eq!(device.as_bytes()[3 * BLOCK_SIZE], 8);
        cache.shrink_to_budget();
        assert_eq!(cache.overflow(), 0);
    }

    #[test]
    fn a_block_in_flight_that_is_freed_stays_resident_until_it_lands() {
        let device = MemDevice::new(16);
        let cache = BlockCache::new(MIN_CACHE_BLOCKS);
        cache.set_pin_metadata(true);
        set(&cache, &device, 2, METADATA, 5);
        let (_, metadata) = cache.freeze();
        assert_eq!(metadata.len(), 1);
        cache.discard(2, false);
        assert_eq!(first_byte(&cache, &device, 2), 5, "the device does not hold it yet");
        cache.land([2].into_iter());
        cache.discard(2, false);
        assert!(!cache.is_cached(2));
    }

    #[test]
    fn restoring_prior_states_undoes_changes_and_discards() {
        let mut device = MemDevice::new(16);
        let cache = BlockCache::new(16);
        set(&cache, &device, 5, OVERWRITE, 1);
        set(&cache, &device, 6, METADATA, 2);
        let snapshot = Change { pin: true, snapshot: true, ..METADATA };
        // Changed, then discarded: the first prior state is what counts.
        let discarded = cache.discard(5, true).unwrap();
        let changed = set(&cache, &device, 6, snapshot, 3).prior.unwrap();
        let unloaded = set(&cache, &device, 7, snapshot, 4).prior.unwrap();
        assert!(matches!(unloaded, Prior::Absent));
        cache.restore(7, unloaded);
        cache.restore(6, changed);
        cache.restore(5, discarded);
        cache.unpin(6);
        assert!(!cache.is_cached(7));
        assert_eq!(cache.peek(5, |bytes| bytes[0]), Some(1));
        assert_eq!(cache.peek(6, |bytes| bytes[0]), Some(2));
        assert_eq!((cache.dirty_blocks(), cache.dirty_metadata_blocks()), (2, 1));
        cache.write_back(&device).unwrap();
        assert_eq!(device.as_bytes()[5 * BLOCK_SIZE], 1);
        assert_eq!(device.as_bytes()[6 * BLOCK_SIZE], 2);
        assert_eq!(device.as_bytes()[7 * BLOCK_SIZE], 0);
    }

    #[test]
    fn pinned_blocks_are_neither_evicted_nor_written_back() {
        let mut device = MemDevice::new(64);
        let cache = BlockCache::new(MIN_CACHE_BLOCKS);
        set(&cache, &device, 1, Change { pin: true, ..DATA }, 1);
        for block in 10..40 {
            first_byte(&cache, &device, block);
        }
        assert!(cache.is_cached(1));
        assert_eq!(cache.write_back(&device).unwrap(), 0);
        cache.unpin(1);
        assert_eq!(cache.write_back(&device).unwrap(), 1);
        assert_eq!(device.as_bytes()[BLOCK_SIZE], 1);
    }

    #[test]
    fn failed_reads_leave_the_cache_consistent() {
        let device = MemDevice::new(4);
        let cache = BlockCache::new(8);
        first_byte(&cache, &device, 1);
        assert!(cache.read(&device, 99, |_| ()).is_err());
        assert!(!cache.is_cached(99));
        assert!(cache.is_cached(1));
        assert_eq!(first_byte(&cache, &device, 1), 0);
    }

    #[test]
    fn a_read_from_the_device_is_dropped_when_a_block_may_have_gone_home_meanwhile() {
        let device = MemDevice::new(4);
        let cache = BlockCache::new(8);
        let version = cache.home_version();
        cache.note_home_write();
        assert!(!cache.insert_clean(2, zeroed_block(), version));
        assert!(!cache.is_cached(2));
        assert!(cache.insert_clean(2, zeroed_block(), cache.home_version()));
        assert!(cache.is_cached(2));
        drop(device);
    }
}
