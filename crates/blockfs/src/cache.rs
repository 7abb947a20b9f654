//! A bounded write-back block cache.
//!
//! At most `capacity` blocks are held. Eviction uses the clock algorithm
//! (a reference bit per slot, a hand sweeping the slots), so hits cost a
//! hash lookup and no list surgery. Dirty blocks are written back in block
//! order, with neighbouring blocks coalesced into one device request, when
//! the caller flushes or when a dirty block must be evicted.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::device::BlockDevice;
use crate::error::DeviceError;
use crate::format::{Block, BLOCK_SIZE};

/// The smallest budget that lets every operation hold the blocks it needs
/// at once (an inode-table block, indirect blocks and a data block).
pub const MIN_CACHE_BLOCKS: usize = 8;

/// Largest run of blocks handed to the device in one write.
const MAX_WRITE_RUN: usize = 256;

struct Slot {
    block: u32,
    data: Box<Block>,
    dirty: bool,
    referenced: bool,
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
    stats: CacheStats,
}

fn zeroed_block() -> Box<Block> {
    // Built on the heap directly: a 4 KiB array on a kernel stack is unwelcome.
    alloc::vec![0u8; BLOCK_SIZE]
        .into_boxed_slice()
        .try_into()
        .expect("exactly one block")
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
            stats: CacheStats::default(),
        }
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
    pub fn read<D: BlockDevice + ?Sized>(
        &mut self,
        device: &mut D,
        block: u32,
    ) -> Result<&Block, DeviceError> {
        let slot = self.slot_for(device, block, true)?;
        Ok(&self.slots[slot].data)
    }

    /// The block's contents for changing; the block becomes dirty.
    pub fn modify<D: BlockDevice + ?Sized>(
        &mut self,
        device: &mut D,
        block: u32,
    ) -> Result<&mut Block, DeviceError> {
        let slot = self.slot_for(device, block, true)?;
        self.mark_dirty(slot);
        Ok(&mut self.slots[slot].data)
    }

    /// A block about to be overwritten whole: zero-filled, never read from
    /// the device, and dirty.
    pub fn overwrite<D: BlockDevice + ?Sized>(
        &mut self,
        device: &mut D,
        block: u32,
    ) -> Result<&mut Block, DeviceError> {
        let slot = self.slot_for(device, block, false)?;
        self.mark_dirty(slot);
        let data = &mut self.slots[slot].data;
        data.fill(0);
        Ok(data)
    }

    /// Drops a freed block without writing it back.
    pub fn forget(&mut self, block: u32) {
        if let Some(slot) = self.index.remove(&block) {
            if self.slots[slot].dirty {
                self.dirty -= 1;
            }
            // Keep the slot vector dense: move the last slot into the hole.
            self.slots.swap_remove(slot);
            if slot < self.slots.len() {
                let moved = self.slots[slot].block;
                self.index.insert(moved, slot);
            }
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
        }
    }

    /// Writes every dirty block back (in block order, coalesced). Does not
    /// flush the device: the caller decides when durability is needed.
    /// Returns the number of blocks written.
    pub fn write_back<D: BlockDevice + ?Sized>(
        &mut self,
        device: &mut D,
    ) -> Result<usize, DeviceError> {
        if self.dirty == 0 {
            return Ok(0);
        }
        let mut dirty: Vec<(u32, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.dirty)
            .map(|(index, slot)| (slot.block, index))
            .collect();
        dirty.sort_unstable();
        let mut run: Vec<u8> = Vec::new();
        let mut start = 0;
        while start < dirty.len() {
            let mut end = start + 1;
            while end < dirty.len()
                && end - start < MAX_WRITE_RUN
                && dirty[end].0 == dirty[end - 1].0 + 1
            {
                end += 1;
            }
            let first_block = dirty[start].0;
            if end - start == 1 {
                device.write_block(first_block, &self.slots[dirty[start].1].data)?;
            } else {
                run.clear();
                for &(_, slot) in &dirty[start..end] {
                    run.extend_from_slice(&self.slots[slot].data[..]);
                }
                device.write_blocks(first_block, &run)?;
            }
            for &(_, slot) in &dirty[start..end] {
                self.slots[slot].dirty = false;
            }
            self.dirty -= end - start;
            self.stats.blocks_written += (end - start) as u64;
            start = end;
        }
        Ok(dirty.len())
    }

    fn mark_dirty(&mut self, slot: usize) {
        if !self.slots[slot].dirty {
            self.slots[slot].dirty = true;
            self.dirty += 1;
        }
    }

    fn slot_for<D: BlockDevice + ?Sized>(
        &mut self,
        device: &mut D,
        block: u32,
        load: bool,
    ) -> Result<usize, DeviceError> {
        if let Some(&slot) = self.index.get(&block) {
            self.stats.hits += 1;
            self.slots[slot].referenced = true;
            return Ok(slot);
        }
        self.stats.misses += 1;
        let slot = if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                block,
                data: zeroed_block(),
                dirty: false,
                referenced: true,
            });
            self.slots.len() - 1
        } else {
            let victim = self.choose_victim();
            if self.slots[victim].dirty {
                // Write back everything dirty at once: one sorted sweep is
                // far cheaper than a scattered write per eviction.
                self.write_back(device)?;
            }
            let old = self.slots[victim].block;
            self.index.remove(&old);
            let slot = &mut self.slots[victim];
            slot.block = block;
            slot.referenced = true;
            victim
        };
        if load {
            if let Err(error) = device.read_block(block, &mut self.slots[slot].data) {
                self.discard_slot(slot);
                return Err(error);
            }
            self.stats.blocks_read += 1;
        }
        self.index.insert(block, slot);
        Ok(slot)
    }

    /// Undoes a slot claimed for a block whose read failed.
    fn discard_slot(&mut self, slot: usize) {
        let last = self.slots.len() - 1;
        self.slots.swap_remove(slot);
        if slot != last {
            let moved = self.slots[slot].block;
            self.index.insert(moved, slot);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    fn choose_victim(&mut self) -> usize {
        // Two sweeps always suffice: the first clears every reference bit.
        loop {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            if self.slots[slot].referenced {
                self.slots[slot].referenced = false;
            } else {
                return slot;
            }
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
            cache.modify(&mut device, block).unwrap()[0] = block as u8 + 1;
            assert!(cache.slots.len() <= MIN_CACHE_BLOCKS);
        }
        cache.write_back(&mut device).unwrap();
        assert_eq!(cache.dirty_blocks(), 0);
        for block in 0..64u32 {
            assert_eq!(
                device.as_bytes()[block as usize * BLOCK_SIZE],
                block as u8 + 1
            );
            assert_eq!(cache.read(&mut device, block).unwrap()[0], block as u8 + 1);
        }
    }

    #[test]
    fn write_back_writes_only_dirty_blocks() {
        let mut device = MemDevice::new(16);
        let mut cache = BlockCache::new(16);
        for block in 0..16 {
            cache.read(&mut device, block).unwrap();
        }
        cache.modify(&mut device, 3).unwrap()[7] = 9;
        cache.modify(&mut device, 4).unwrap()[7] = 9;
        let before = cache.stats().blocks_written;
        assert_eq!(cache.write_back(&mut device).unwrap(), 2);
        assert_eq!(cache.stats().blocks_written - before, 2);
        assert_eq!(cache.write_back(&mut device).unwrap(), 0);
    }

    #[test]
    fn forgotten_blocks_are_not_written() {
        let mut device = MemDevice::new(16);
        let mut cache = BlockCache::new(16);
        cache.overwrite(&mut device, 5).unwrap()[0] = 1;
        cache.overwrite(&mut device, 6).unwrap()[0] = 2;
        cache.forget(5);
        cache.write_back(&mut device).unwrap();
        assert_eq!(device.as_bytes()[5 * BLOCK_SIZE], 0);
        assert_eq!(device.as_bytes()[6 * BLOCK_SIZE], 2);
        assert!(!cache.is_cached(5));
        assert_eq!(cache.read(&mut device, 6).unwrap()[0], 2);
    }

    #[test]
    fn failed_reads_leave_the_cache_consistent() {
        let mut device = MemDevice::new(4);
        let mut cache = BlockCache::new(8);
        cache.read(&mut device, 1).unwrap();
        assert!(cache.read(&mut device, 99).is_err());
        assert!(!cache.is_cached(99));
        assert!(cache.is_cached(1));
        assert_eq!(cache.read(&mut device, 1).unwrap()[0], 0);
    }
}
