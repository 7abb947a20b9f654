//! A bounded write-back block cache.
//!
//! At most `capacity` blocks are held. Eviction uses the clock algorithm
//! (a reference bit per slot, a hand sweeping the slots), so hits cost a
//! hash lookup and no list surgery. Dirty blocks are written back in block
//! order, with neighbouring blocks coalesced into one device request, when
//! the caller flushes or when a dirty block must be evicted.
//!
//! Each dirty block is either file data or metadata. With a journal,
//! dirty metadata is pinned: it may reach its home location only after the
//! transaction holding it has committed, so eviction passes over it, and
//! the cache may briefly hold more than its budget until the next commit
//! (the filesystem commits at the next operation boundary when it does).
//!
//! Undo: while an operation runs (between [`BlockCache::begin`] and
//! [`BlockCache::keep`] or [`BlockCache::rollback`]), the first change to
//! each block records what the cache held before — the old bytes and dirty
//! state, or "nothing: the device has it" — and the block is pinned, so it
//! can neither be evicted nor written home mid-operation. Rolling back
//! restores every recorded block, in reverse order, so a failed operation
//! leaves the cache exactly as it found it (docs/DESIGN.md, "Transactions").
//!
//! Commit in flight: [`BlockCache::freeze`] hands a committing
//! transaction copies of every dirty block and marks their slots in
//! flight until [`BlockCache::land`]. While the commit writes without the
//! filesystem lock, those slots stay resident (so nobody reads the stale
//! home copy) and are never written home (a newer version written there
//! could be overwritten by the commit's older one); they may change again
//! as part of the next transaction.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::device::{write_runs, BlockDevice};
use crate::error::DeviceError;
use crate::format::{Block, BLOCK_SIZE};

/// Copies of blocks, with their numbers, in block order.
pub type BlockCopies = Vec<(u32, Box<Block>)>;

/// The smallest budget that lets every operation hold the blocks it needs
/// at once (an inode-table block, indirect blocks and a data block).
pub const MIN_CACHE_BLOCKS: usize = 8;

/// What a dirty block holds, which decides when it may be written home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// File contents: may be written home at any time (ordered mode only
    /// requires it to be home before the commit that makes it reachable).
    Data,
    /// Superblock, bitmap, inode table, directory and indirect blocks.
    Metadata,
}

struct Slot {
    block: u32,
    data: Box<Block>,
    /// `Some` when the block differs from the device.
    dirty: Option<BlockKind>,
    referenced: bool,
    /// Changed by the operation in progress: pinned until it ends.
    in_operation: bool,
    /// Its contents as of the committing transaction are being written
    /// home: pinned, and not written back, until that commit lands.
    in_flight: bool,
}

/// What the cache held for a block before the operation first changed it.
enum Prior {
    /// Not cached: the device holds the block's current contents.
    Absent,
    Cached {
        data: Box<Block>,
        dirty: Option<BlockKind>,
    },
}

impl Slot {
    /// A clean, just-referenced slot (its bytes are filled by the caller).
    fn new(block: u32) -> Self {
        Slot {
            block,
            data: zeroed_block(),
            dirty: None,
            referenced: true,
            in_operation: false,
            in_flight: false,
        }
    }

    fn is_dirty(&self) -> bool {
        self.dirty.is_some()
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

pub struct BlockCache {
    slots: Vec<Slot>,
    index: HashMap<u32, usize>,
    hand: usize,
    capacity: usize,
    dirty: usize,
    dirty_metadata: usize,
    /// Keep dirty metadata until the journal commits it.
    pin_metadata: bool,
    /// Prior states recorded by the operation in progress, oldest first;
    /// `None` outside an operation.
    undo: Option<Vec<(u32, Prior)>>,
    stats: CacheStats,
}

pub(crate) fn zeroed_block() -> Box<Block> {
    // Built on the heap directly: a 4 KiB array on a kernel stack is unwelcome.
    alloc::vec![0u8; BLOCK_SIZE].into_boxed_slice().try_into().expect("exactly one block")
}

impl BlockCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(MIN_CACHE_BLOCKS);
        BlockCache {
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
            capacity,
            dirty: 0,
            dirty_metadata: 0,
            pin_metadata: false,
            undo: None,
            stats: CacheStats::default(),
        }
    }

    /// Starts recording prior states for an operation.
    pub fn begin(&mut self) {
        debug_assert!(self.undo.is_none(), "operations do not nest");
        self.undo = Some(Vec::new());
    }

    /// Ends the operation keeping its changes (they join the running
    /// transaction); its blocks become ordinary dirty blocks.
    pub fn keep(&mut self) {
        for (block, _) in self.undo.take().unwrap_or_default() {
            if let Some(&slot) = self.index.get(&block) {
                self.slots[slot].in_operation = false;
            }
        }
    }

    /// Ends the operation undoing every change it made to the cache.
    pub fn rollback(&mut self) {
        let log = self.undo.take().unwrap_or_default();
        for (block, prior) in log.into_iter().rev() {
            match prior {
                Prior::Absent => self.forget(block),
                Prior::Cached { data, dirty } => {
                    let slot = match self.index.get(&block) {
                        Some(&slot) => slot,
                        None => {
                            self.slots.push(Slot::new(block));
                            self.index.insert(block, self.slots.len() - 1);
                            self.slots.len() - 1
                        }
                    };
                    self.clear_dirty(slot);
                    self.slots[slot].data = data;
                    if let Some(kind) = dirty {
                        self.mark_dirty(slot, kind);
                    }
                    self.slots[slot].in_operation = false;
                }
            }
        }
    }

    /// Records a cached slot's state before its first change in the
    /// operation in progress.
    fn note_change(&mut self, slot: usize) {
        let Some(undo) = self.undo.as_mut() else { return };
        let entry = &mut self.slots[slot];
        if !entry.in_operation {
            entry.in_operation = true;
            undo.push((entry.block, Prior::Cached { data: entry.data.clone(), dirty: entry.dirty }));
        }
    }

    /// Records that `block` was not cached before the operation changed it.
    fn note_new(&mut self, slot: usize) {
        let Some(undo) = self.undo.as_mut() else { return };
        self.slots[slot].in_operation = true;
        undo.push((self.slots[slot].block, Prior::Absent));
    }

    /// Blocks the operation in progress has changed.
    pub fn operation_blocks(&self) -> usize {
        self.undo.as_ref().map_or(0, Vec::len)
    }

    /// With a journal, dirty metadata stays in memory until committed.
    pub fn set_pin_metadata(&mut self, pin: bool) {
        self.pin_metadata = pin;
    }

    pub fn dirty_metadata_blocks(&self) -> usize {
        self.dirty_metadata
    }

    /// Blocks held beyond the budget (pinned metadata awaiting a commit).
    pub fn overflow(&self) -> usize {
        self.slots.len().saturating_sub(self.capacity)
    }

    /// A cached block's contents without touching the device.
    pub fn peek(&self, block: u32) -> Option<&Block> {
        self.index.get(&block).map(|&slot| &*self.slots[slot].data)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn dirty_blocks(&self) -> usize {
        self.dirty
    }

    pub fn is_cached(&self, block: u32) -> bool {
        self.index.contains_key(&block)
    }

    /// The block's contents, read from the device on a miss.
    pub fn read<D: BlockDevice + ?Sized>(&mut self, device: &D, block: u32) -> Result<&Block, DeviceError> {
        let slot = self.slot_for(device, block, true)?;
        Ok(&self.slots[slot].data)
    }

    /// Caches `data` as `block`'s clean contents, read from the device by
    /// a caller that did not hold the cache meanwhile. A block cached in
    /// the meantime keeps what it has: that copy is at least as new.
    pub fn insert_clean<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        block: u32,
        data: Box<Block>,
    ) -> Result<(), DeviceError> {
        if self.index.contains_key(&block) {
            return Ok(());
        }
        let slot = self.slot_for(device, block, false)?;
        self.slots[slot].data = data;
        self.stats.blocks_read += 1;
        Ok(())
    }

    /// The block's contents for changing; the block becomes dirty.
    pub fn modify<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        block: u32,
        kind: BlockKind,
    ) -> Result<&mut Block, DeviceError> {
        let slot = self.slot_for_change(device, block, true)?;
        self.mark_dirty(slot, kind);
        Ok(&mut self.slots[slot].data)
    }

    /// A block about to be overwritten whole: zero-filled, never read from
    /// the device, and dirty.
    pub fn overwrite<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        block: u32,
        kind: BlockKind,
    ) -> Result<&mut Block, DeviceError> {
        let slot = self.slot_for_change(device, block, false)?;
        self.mark_dirty(slot, kind);
        let data = &mut self.slots[slot].data;
        data.fill(0);
        Ok(data)
    }

    /// A slot about to change, its prior state recorded for undo.
    fn slot_for_change<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        block: u32,
        load: bool,
    ) -> Result<usize, DeviceError> {
        if let Some(&slot) = self.index.get(&block) {
            self.note_change(slot);
        }
        let was_cached = self.index.contains_key(&block);
        let slot = self.slot_for(device, block, load)?;
        if !was_cached {
            self.note_new(slot);
        }
        Ok(slot)
    }

    /// Drops a freed block without writing it back (undoably, inside an
    /// operation). A block in flight keeps its slot, clean, until its
    /// commit lands: the device does not hold it yet.
    pub fn discard(&mut self, block: u32) {
        let Some(&slot) = self.index.get(&block) else { return };
        if self.slots[slot].in_flight {
            self.note_change(slot);
            self.clear_dirty(slot);
            return;
        }
        let dirty = self.slots[slot].dirty;
        self.index.remove(&block);
        self.clear_dirty(slot);
        let removed = self.remove_slot(slot);
        // The slot is gone, so its bytes can become the prior state
        // without a copy (unless the operation recorded one already).
        if let (Some(undo), false) = (self.undo.as_mut(), removed.in_operation) {
            undo.push((block, Prior::Cached { data: removed.data, dirty }));
        }
    }

    /// Drops a cached copy of a block the device is about to get new
    /// contents for, outside the cache (a block just allocated).
    pub fn drop_stale(&mut self, block: u32) {
        if let Some(&slot) = self.index.get(&block) {
            debug_assert!(!self.is_pinned(slot), "a block just allocated is neither changed nor in flight");
            self.forget(block);
        }
    }

    /// Takes the running transaction for a commit: copies of every dirty
    /// block, file data and metadata apart, each in block order. The
    /// slots become clean and in flight (see the module comment).
    pub fn freeze(&mut self) -> (BlockCopies, BlockCopies) {
        debug_assert!(self.undo.is_none(), "commits happen between operations");
        let (mut data, mut metadata) = (Vec::new(), Vec::new());
        for slot in 0..self.slots.len() {
            let Some(kind) = self.slots[slot].dirty else { continue };
            self.clear_dirty(slot);
            let entry = &mut self.slots[slot];
            entry.in_flight = true;
            let copy = (entry.block, entry.data.clone());
            match kind {
                BlockKind::Data => data.push(copy),
                BlockKind::Metadata => metadata.push(copy),
            }
        }
        data.sort_unstable_by_key(|(block, _)| *block);
        metadata.sort_unstable_by_key(|(block, _)| *block);
        (data, metadata)
    }

    /// Holds a cached block in flight (see `freeze`).
    pub fn hold_in_flight(&mut self, block: u32) {
        if let Some(&slot) = self.index.get(&block) {
            self.slots[slot].in_flight = true;
        }
    }

    /// Changes a cached block's bytes, leaving its dirty state alone.
    pub fn patch(&mut self, block: u32, change: impl FnOnce(&mut Block)) {
        if let Some(&slot) = self.index.get(&block) {
            change(&mut self.slots[slot].data);
        }
    }

    /// The commit holding `blocks` is home: their slots are ordinary again.
    pub fn land(&mut self, blocks: impl Iterator<Item = u32>) {
        for block in blocks {
            if let Some(&slot) = self.index.get(&block) {
                self.slots[slot].in_flight = false;
            }
        }
    }

    /// Drops a block from the cache without recording it.
    fn forget(&mut self, block: u32) {
        if let Some(slot) = self.index.remove(&block) {
            self.clear_dirty(slot);
            self.remove_slot(slot);
        }
    }

    /// Removes a slot (already out of the index), keeping the slot vector
    /// dense by moving the last slot into the hole; returns it.
    fn remove_slot(&mut self, slot: usize) -> Slot {
        let removed = self.slots.swap_remove(slot);
        if slot < self.slots.len() {
            let moved = self.slots[slot].block;
            self.index.insert(moved, slot);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        removed
    }

    /// Writes every dirty block back (in block order, coalesced). Does not
    /// flush the device: the caller decides when durability is needed.
    /// Returns the number of blocks written.
    pub fn write_back<D: BlockDevice + ?Sized>(&mut self, device: &D) -> Result<usize, DeviceError> {
        self.write_back_where(device, |_| true)
    }

    fn write_back_where<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        wanted: impl Fn(BlockKind) -> bool,
    ) -> Result<usize, DeviceError> {
        if self.dirty == 0 {
            return Ok(0);
        }
        let mut dirty: Vec<(u32, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.in_operation && !slot.in_flight && slot.dirty.is_some_and(&wanted))
            .map(|(index, slot)| (slot.block, index))
            .collect();
        dirty.sort_unstable();
        let blocks: Vec<(u32, &Block)> =
            dirty.iter().map(|&(block, slot)| (block, &*self.slots[slot].data)).collect();
        write_runs(device, &blocks)?;
        for &(_, slot) in &dirty {
            self.clear_dirty(slot);
        }
        self.stats.blocks_written += dirty.len() as u64;
        Ok(dirty.len())
    }

    /// Marks a slot dirty. Metadata wins: a block changed as metadata
    /// stays metadata until written, even if later touched as data.
    fn mark_dirty(&mut self, slot: usize, kind: BlockKind) {
        match (self.slots[slot].dirty, kind) {
            (None, _) => {
                self.dirty += 1;
                if kind == BlockKind::Metadata {
                    self.dirty_metadata += 1;
                }
                self.slots[slot].dirty = Some(kind);
            }
            (Some(BlockKind::Data), BlockKind::Metadata) => {
                self.dirty_metadata += 1;
                self.slots[slot].dirty = Some(kind);
            }
            _ => {}
        }
    }

    fn clear_dirty(&mut self, slot: usize) {
        match self.slots[slot].dirty.take() {
            Some(BlockKind::Metadata) => {
                self.dirty -= 1;
                self.dirty_metadata -= 1;
            }
            Some(BlockKind::Data) => self.dirty -= 1,
            None => {}
        }
    }

    fn is_pinned(&self, slot: usize) -> bool {
        let slot = &self.slots[slot];
        slot.in_operation || slot.in_flight || (self.pin_metadata && slot.dirty == Some(BlockKind::Metadata))
    }

    fn slot_for<D: BlockDevice + ?Sized>(
        &mut self,
        device: &D,
        block: u32,
        load: bool,
    ) -> Result<usize, DeviceError> {
        if let Some(&slot) = self.index.get(&block) {
            self.stats.hits += 1;
            self.slots[slot].referenced = true;
            return Ok(slot);
        }
        self.stats.misses += 1;
        let victim = if self.slots.len() < self.capacity { None } else { self.choose_victim() };
        let slot = match victim {
            None => {
                self.slots.push(Slot::new(block));
                self.slots.len() - 1
            }
            Some(victim) => {
                if self.slots[victim].is_dirty() {
                    // Write back everything that may go home at once: one
                    // sorted sweep is far cheaper than a write per eviction.
                    let pin = self.pin_metadata;
                    self.write_back_where(device, |kind| !pin || kind == BlockKind::Data)?;
                }
                let old = self.slots[victim].block;
                self.index.remove(&old);
                let slot = &mut self.slots[victim];
                slot.block = block;
                slot.referenced = true;
                slot.in_operation = false;
                victim
            }
        };
        if load {
            if let Err(error) = device.read_block(block, &mut self.slots[slot].data) {
                self.remove_slot(slot);
                return Err(error);
            }
            self.stats.blocks_read += 1;
        }
        self.index.insert(block, slot);
        Ok(slot)
    }

    /// A slot to reuse, or `None` when every slot is pinned.
    fn choose_victim(&mut self) -> Option<usize> {
        // Two sweeps suffice: the first clears every reference bit.
        for _ in 0..2 * self.slots.len() {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            if self.is_pinned(slot) {
                continue;
            }
            if self.slots[slot].referenced {
                self.slots[slot].referenced = false;
            } else {
                return Some(slot);
            }
        }
        None
    }

    /// Drops clean slots beyond the budget (after a commit unpinned them).
    pub fn shrink_to_budget(&mut self) {
        while self.slots.len() > self.capacity {
            let Some(clean) =
                self.slots.iter().rposition(|slot| !slot.is_dirty() && !slot.in_operation && !slot.in_flight)
            else {
                break;
            };
            let block = self.slots[clean].block;
            self.forget(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    #[test]
    fn never_holds_more_than_its_budget_and_writes_back_dirty_blocks() {
        let mut device = MemDevice::new(64);
        let mut cache = BlockCache::new(MIN_CACHE_BLOCKS);
        for block in 0..64u32 {
            cache.modify(&device, block, BlockKind::Data).unwrap()[0] = block as u8 + 1;
            assert!(cache.slots.len() <= MIN_CACHE_BLOCKS);
        }
        cache.write_back(&device).unwrap();
        assert_eq!(cache.dirty_blocks(), 0);
        for block in 0..64u32 {
            assert_eq!(device.as_bytes()[block as usize * BLOCK_SIZE], block as u8 + 1);
            assert_eq!(cache.read(&device, block).unwrap()[0], block as u8 + 1);
        }
    }

    #[test]
    fn write_back_writes_only_dirty_blocks() {
        let device = MemDevice::new(16);
        let mut cache = BlockCache::new(16);
        for block in 0..16 {
            cache.read(&device, block).unwrap();
        }
        cache.modify(&device, 3, BlockKind::Data).unwrap()[7] = 9;
        cache.modify(&device, 4, BlockKind::Metadata).unwrap()[7] = 9;
        let before = cache.stats().blocks_written;
        assert_eq!(cache.write_back(&device).unwrap(), 2);
        assert_eq!(cache.stats().blocks_written - before, 2);
        assert_eq!(cache.write_back(&device).unwrap(), 0);
    }

    #[test]
    fn forgotten_blocks_are_not_written() {
        let mut device = MemDevice::new(16);
        let mut cache = BlockCache::new(16);
        cache.overwrite(&device, 5, BlockKind::Data).unwrap()[0] = 1;
        cache.overwrite(&device, 6, BlockKind::Data).unwrap()[0] = 2;
        cache.discard(5);
        cache.write_back(&device).unwrap();
        assert_eq!(device.as_bytes()[5 * BLOCK_SIZE], 0);
        assert_eq!(device.as_bytes()[6 * BLOCK_SIZE], 2);
        assert!(!cache.is_cached(5));
        assert_eq!(cache.read(&device, 6).unwrap()[0], 2);
    }

    #[test]
    fn pinned_metadata_is_never_evicted_and_data_is() {
        let mut device = MemDevice::new(64);
        let mut cache = BlockCache::new(MIN_CACHE_BLOCKS);
        cache.set_pin_metadata(true);
        for block in 0..12u32 {
            cache.modify(&device, block, BlockKind::Metadata).unwrap()[0] = 7;
        }
        assert_eq!(cache.overflow(), 12 - MIN_CACHE_BLOCKS);
        for block in 20..40u32 {
            cache.overwrite(&device, block, BlockKind::Data).unwrap()[0] = 9;
        }
        // Data went home under pressure; metadata did not.
        assert_eq!(device.as_bytes()[20 * BLOCK_SIZE], 9);
        assert!((0..12).all(|block| device.as_bytes()[block * BLOCK_SIZE] == 0));
        // A commit takes copies of everything dirty, metadata apart.
        let dirty_data = cache.dirty_blocks() - 12;
        let (data, metadata) = cache.freeze();
        assert_eq!(data.len(), dirty_data);
        assert_eq!(
            metadata.iter().map(|(block, _)| *block).collect::<Vec<u32>>(),
            (0..12).collect::<Vec<u32>>()
        );
        assert_eq!(cache.dirty_blocks(), 0);
        // In flight: resident and never written back, even when changed
        // again, until the commit lands.
        cache.modify(&device, 3, BlockKind::Data).unwrap()[0] = 8;
        cache.shrink_to_budget();
        assert_eq!(cache.write_back(&device).unwrap(), 0);
        assert!((0..12).all(|block| cache.is_cached(block)));
        cache.land(data.iter().chain(&metadata).map(|(block, _)| *block));
        assert_eq!(cache.write_back(&device).unwrap(), 1);
        assert_eq!(device.as_bytes()[3 * BLOCK_SIZE], 8);
        cache.shrink_to_budget();
        assert_eq!(cache.overflow(), 0);
    }

    #[test]
    fn a_block_in_flight_that_is_freed_stays_resident_until_it_lands() {
        let device = MemDevice::new(16);
        let mut cache = BlockCache::new(MIN_CACHE_BLOCKS);
        cache.set_pin_metadata(true);
        cache.modify(&device, 2, BlockKind::Metadata).unwrap()[0] = 5;
        let (_, metadata) = cache.freeze();
        assert_eq!(metadata.len(), 1);
        cache.begin();
        cache.discard(2);
        cache.keep();
        assert_eq!(cache.read(&device, 2).unwrap()[0], 5, "the device does not hold it yet");
        cache.land([2].into_iter());
        cache.discard(2);
        assert!(!cache.is_cached(2));
    }

    #[test]
    fn a_rolled_back_discard_brings_the_block_back_as_it_was() {
        let mut device = MemDevice::new(16);
        let mut cache = BlockCache::new(16);
        cache.overwrite(&device, 5, BlockKind::Data).unwrap()[0] = 1;
        cache.overwrite(&device, 6, BlockKind::Metadata).unwrap()[0] = 2;
        cache.begin();
        cache.discard(5);
        // Changed first, then discarded: the prior state is the first one.
        cache.modify(&device, 6, BlockKind::Metadata).unwrap()[0] = 3;
        cache.discard(6);
        assert!(!cache.is_cached(5) && !cache.is_cached(6));
        cache.rollback();
        assert_eq!(cache.peek(5).unwrap()[0], 1);
        assert_eq!(cache.peek(6).unwrap()[0], 2);
        assert_eq!((cache.dirty_blocks(), cache.dirty_metadata_blocks()), (2, 1));
        cache.write_back(&device).unwrap();
        assert_eq!(device.as_bytes()[5 * BLOCK_SIZE], 1);
        assert_eq!(device.as_bytes()[6 * BLOCK_SIZE], 2);
    }

    #[test]
    fn failed_reads_leave_the_cache_consistent() {
        let device = MemDevice::new(4);
        let mut cache = BlockCache::new(8);
        cache.read(&device, 1).unwrap();
        assert!(cache.read(&device, 99).is_err());
        assert!(!cache.is_cached(99));
        assert!(cache.is_cached(1));
        assert_eq!(cache.read(&device, 1).unwrap()[0], 0);
    }

    #[test]
    fn rollback_after_a_failed_read_forgets_every_change() {
        let mut device = MemDevice::new(64);
        let mut cache = BlockCache::new(MIN_CACHE_BLOCKS);
        cache.set_pin_metadata(true);
        for block in 40..48 {
            cache.read(&device, block).unwrap();
        }
        cache.begin();
        cache.modify(&device, 1, BlockKind::Data).unwrap()[0] = 1;
        for block in 2..20 {
            cache.overwrite(&device, block, BlockKind::Data).unwrap()[0] = 2;
        }
        assert!(cache.read(&device, 99).is_err());
        cache.rollback();
        assert_eq!(cache.write_back(&device).unwrap(), 0);
        assert!(device.as_bytes().iter().all(|&b| b == 0));
    }
}
