//! Block and inode allocation.
//!
//! Placement follows allocation groups, as ext2's block groups do
//! (docs/DESIGN.md §5.3): the inode table is cut into groups of
//! `INODE_GROUP` inodes and the data area into as many regions. A new
//! inode is looked for from its parent directory's group, except a
//! directory made in the root, which starts the next group (a rotor); a
//! file's blocks come from its inode's group's region, wrapping around
//! inside it, and spill past it only when it is full. Consecutive groups
//! get regions under different bitmap blocks where the image has several.
//! So files of one directory stay together, and work in different
//! top-level directories (two threads, two untars) touches different
//! inode-table and bitmap blocks.
//!
//! No lock covers the whole allocator. A block is found and marked used in
//! one visit to its bitmap block, under that block's cache lock, so two
//! operations never take the same one. Inodes are taken under their
//! group's lock, which also keeps the group's search hint and the inodes
//! being freed. The free counts are atomics, and an operation changes them
//! only once it has succeeded (`Tx::finish`), so a rollback leaves them
//! alone.
//!
//! Free means `links_count == 0` for an inode, except for orphans
//! (unlinked but still held), inodes an operation in progress is freeing,
//! and the journal's. Every allocation is undone by its inverse (the bit
//! cleared), since other operations change the same bitmap block
//! meanwhile; frees wait for the operation's end (`Tx::finish`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use hashbrown::HashSet;

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::geometry::{Geometry, BITS_PER_BITMAP_BLOCK};
use crate::format::inode::{DiskInode, INODES_PER_BLOCK};
use crate::sync::{Mutex, Padded, BARRIER_SLOTS};
use crate::tx::{Tx, Undo};

/// Inodes per allocation group: 16 inode-table blocks.
pub(crate) const INODE_GROUP: u32 = 16 * INODES_PER_BLOCK;

/// Where a new inode is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InodeGoal {
    /// In this inode's group (the new one's parent directory).
    Near(u32),
    /// In the next group of the rotor (a new top-level directory).
    NextGroup,
}

/// A group's inodes, under its lock.
struct InodeGroup {
    /// Where the next search starts: every inode of the group below it is
    /// taken.
    hint: u32,
    /// Inodes operations in progress are freeing: free on disk already,
    /// but not to be taken until their operation ends.
    freeing: HashSet<u32>,
}

/// A group's part of the data area, and where its searches start.
struct Region {
    start: u32,
    end: u32,
    /// Where the next search without a goal starts, inside the region.
    hint: AtomicU32,
    /// Where the next search outside the region starts, once the region
    /// was found full.
    spill: AtomicU32,
    /// The allocator's free epoch when the region was last found full
    /// (`NOT_FULL`: never).
    full_at: AtomicU64,
}

const NOT_FULL: u64 = u64::MAX;

struct FreeEpoch {
    epoch: AtomicU64,
    /// A region was found full at the current epoch: the next free moves
    /// it. Otherwise frees leave the line alone, so threads freeing all
    /// the time (every short-lived file) do not take it from each other.
    /// A free racing the marking may leave a region marked full with room;
    /// the spill search covers the whole disk, so that costs placement
    /// until the next free, never space.
    watched: AtomicBool,
}

/// The allocator's state.
pub(crate) struct Allocator {
    count: u32,
    usable_inodes: u32,
    parts: Parts,
    /// Each group's region of the data area.
    regions: Box<[Padded<Region>]>,
    /// Moves when blocks become free (a commit lands its frees, a block
    /// is freed at once, a rollback gives an allocation back) after a
    /// region was found full, so that region is searched again only then.
    free_epoch: Padded<FreeEpoch>,
    inode_groups: Box<[Padded<Mutex<InodeGroup>>]>,
    /// The free counts as of mount, and what each thread slot's
    /// operations changed since (summed when read, which is seldom: block
    /// 0 at a commit, `statfs`), so counting writes no shared line.
    mounted_free: (u32, u32),
    changed: Box<[Padded<(AtomicI64, AtomicI64)>]>,
    /// The group the next top-level directory starts in.
    dir_rotor: AtomicU32,
    /// The last group an inode spilled into from a full one: where the
    /// next spill looks first.
    spill: AtomicU32,
}

impl Allocator {
    pub fn new(geometry: &Geometry, free_blocks: u32, free_inodes: u32) -> Self {
        let usable = geometry.usable_inodes();
        let count = usable.div_ceil(INODE_GROUP).max(1);
        let parts = Parts::new(geometry, count);
        Allocator {
            count,
            usable_inodes: usable,
            parts,
            regions: regions(geometry, parts)
                .into_iter()
                .map(|(start, end)| {
                    Padded(Region {
                        start,
                        end,
                        hint: AtomicU32::new(start),
                        spill: AtomicU32::new(end),
                        full_at: AtomicU64::new(NOT_FULL),
                    })
                })
                .collect(),
            free_epoch: Padded(FreeEpoch { epoch: AtomicU64::new(0), watched: AtomicBool::new(false) }),
            inode_groups: (0..count)
                .map(|group| {
                    Padded(Mutex::new(InodeGroup { hint: group * INODE_GROUP, freeing: HashSet::new() }))
                })
                .collect(),
            mounted_free: (free_blocks, free_inodes),
            changed: (0..BARRIER_SLOTS).map(|_| Padded((AtomicI64::new(0), AtomicI64::new(0)))).collect(),
            dir_rotor: AtomicU32::new(0),
            spill: AtomicU32::new(0),
        }
    }

    fn group_of(&self, ino: u32) -> u32 {
        (ino / INODE_GROUP).min(self.count - 1)
    }

    /// The inodes of group `group`: never 0 (the root), never past the
    /// table's slots.
    fn inodes_of(&self, group: u32) -> (u32, u32) {
        let end = if group + 1 == self.count { self.usable_inodes } else { (group + 1) * INODE_GROUP };
        ((group * INODE_GROUP).max(1), end.min(self.usable_inodes))
    }

    pub fn free_blocks(&self) -> u32 {
        let changed: i64 = self.changed.iter().map(|slot| slot.0 .0.load(Ordering::SeqCst)).sum();
        (self.mounted_free.0 as i64 + changed).clamp(0, u32::MAX as i64) as u32
    }

    pub fn free_inodes(&self) -> u32 {
        let changed: i64 = self.changed.iter().map(|slot| slot.0 .1.load(Ordering::SeqCst)).sum();
        (self.mounted_free.1 as i64 + changed).clamp(0, self.usable_inodes as i64) as u32
    }

    /// Counts blocks and inodes taken (negative) or given back (positive)
    /// by an operation of thread slot `slot` that succeeded, or a commit
    /// that landed.
    pub fn count(&self, slot: usize, blocks: i64, inodes: i64) {
        let (block_count, inode_count) = &self.changed[slot].0;
        if blocks != 0 {
            block_count.fetch_add(blocks, Ordering::SeqCst);
        }
        if blocks > 0 {
            self.note_blocks_freed();
        }
        if inodes != 0 {
            inode_count.fetch_add(inodes, Ordering::SeqCst);
        }
    }

    /// Inode `ino`, freed by an operation that succeeded, may be taken
    /// again.
    pub fn inode_freed(&self, ino: u32) {
        let mut group = self.inode_groups[self.group_of(ino) as usize].0.lock();
        group.freeing.remove(&ino);
        group.hint = group.hint.min(ino);
    }

    /// Undoes `stop_freeing`'s hold on `ino` (a rollback).
    pub fn unhold(&self, ino: u32) {
        self.inode_groups[self.group_of(ino) as usize].0.lock().freeing.remove(&ino);
    }

    /// Puts a block search hint back, unless another allocation moved it.
    pub fn unallocate_block(&self, block: u32, group: u32) {
        let region = &self.regions[group as usize].0;
        let hint = if (region.start..region.end).contains(&block) { &region.hint } else { &region.spill };
        let _ = hint.compare_exchange(block + 1, block, Ordering::Relaxed, Ordering::Relaxed);
        self.note_blocks_freed();
    }

    /// Blocks became free: regions found full may have room again.
    fn note_blocks_freed(&self) {
        let free = &self.free_epoch.0;
        if free.watched.load(Ordering::SeqCst) {
            free.watched.store(false, Ordering::SeqCst);
            free.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The end of the region holding data block `block`.
    fn region_end(&self, block: u32) -> u32 {
        self.parts.start(self.parts.rank_of(block) + 1)
    }

    /// Puts the hints an inode allocation moved back, unless another
    /// allocation moved them since.
    pub fn unallocate_inode(&self, taken: &InodeTaken) {
        let mut group = self.inode_groups[self.group_of(taken.ino) as usize].0.lock();
        if group.hint == taken.ino + 1 {
            group.hint = taken.hint;
        }
        drop(group);
        if let Some(rotor) = taken.rotor {
            self.rewind_rotor(rotor);
        }
    }

    /// Puts the directory rotor back to `rotor`, unless another
    /// allocation moved it since.
    fn rewind_rotor(&self, rotor: u32) {
        let _ = self.dir_rotor.compare_exchange(
            rotor.wrapping_add(1),
            rotor,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// The data area cut in `count` equal parts, part `rank` being
/// `start(rank)..start(rank + 1)`.
#[derive(Clone, Copy)]
struct Parts {
    first: u32,
    blocks: u64,
    count: u32,
}

impl Parts {
    fn new(geometry: &Geometry, count: u32) -> Self {
        Parts { first: geometry.first_data_block(), blocks: geometry.data_blocks() as u64, count }
    }

    fn start(&self, rank: u32) -> u32 {
        self.first + (self.blocks * rank as u64 / self.count as u64) as u32
    }

    /// The part holding data block `block`.
    fn rank_of(&self, block: u32) -> u32 {
        let offset = block.saturating_sub(self.first) as u64;
        // The quotient is off by at most one either way; step to the part.
        let mut rank = ((offset * self.count as u64) / self.blocks.max(1)).min(self.count as u64 - 1) as u32;
        while rank > 0 && self.start(rank) > block {
            rank -= 1;
        }
        while rank + 1 < self.count && self.start(rank + 1) <= block {
            rank += 1;
        }
        rank
    }
}

/// Each group's region of the data area. The parts are dealt to the
/// groups so that consecutive groups fall under different bitmap blocks
/// when the image has several: group `g` gets part `rank(g)`, ranking
/// groups by (`g` mod bitmap blocks, `g` / bitmap blocks).
fn regions(geometry: &Geometry, parts: Parts) -> Vec<(u32, u32)> {
    let count = parts.count;
    let bitmap_blocks = geometry.block_count.div_ceil(BITS_PER_BITMAP_BLOCK).clamp(1, count);
    (0..count)
        .map(|group| {
            let residue = group % bitmap_blocks;
            let before: u32 = (0..residue).map(|k| (count - k).div_ceil(bitmap_blocks)).sum();
            let rank = before + group / bitmap_blocks;
            (parts.start(rank), parts.start(rank + 1))
        })
        .collect()
}

/// Where a search after `block` starts, wrapping around inside `low..high`.
fn next_within(block: u32, low: u32, high: u32) -> u32 {
    if block + 1 < high {
        block + 1
    } else {
        low
    }
}

/// An inode allocation, as undo needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InodeTaken {
    pub ino: u32,
    /// Its group's search hint before.
    pub hint: u32,
    /// The directory rotor before, when the allocation moved it.
    pub rotor: Option<u32>,
}

impl<D: BlockDevice> Tx<'_, D> {
    /// Whether `block` is marked used in the bitmap.
    pub fn block_in_use(&mut self, block: u32) -> Result<bool> {
        let (bitmap_block, bit) = self.geometry().bitmap_location(block);
        self.read_block(bitmap_block, |bytes| bytes[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Finds a clear bit in `[first_bit, end_bit)` of `bitmap_block` and
    /// sets it, in one visit under the block's lock: the bit's number.
    fn claim_bit(&mut self, bitmap_block: u32, first_bit: u32, end_bit: u32) -> Result<Option<u32>> {
        self.modify_shared(bitmap_block, |bytes| {
            let bit = first_clear_bit(bytes, first_bit, end_bit)?;
            bytes[(bit / 8) as usize] |= 1u8 << (bit % 8);
            Some(bit)
        })
    }

    /// Takes the first free block in `[from, to)`. The bitmap block of
    /// `from` is claimed in at once (it usually has room); the ones after
    /// are read first, so a full one is not changed for nothing.
    fn take_free_between(&mut self, from: u32, to: u32) -> Result<Option<u32>> {
        let mut block = from;
        let mut first = true;
        while block < to {
            let (bitmap_block, first_bit) = self.geometry().bitmap_location(block);
            let end_bit = first_bit + (BITS_PER_BITMAP_BLOCK - first_bit).min(to - block);
            let has_room = first
                || self
                    .read_block(bitmap_block, |bytes| first_clear_bit(bytes, first_bit, end_bit))?
                    .is_some();
            if has_room {
                if let Some(bit) = self.claim_bit(bitmap_block, first_bit, end_bit)? {
                    return Ok(Some(block + (bit - first_bit)));
                }
            }
            first = false;
            block += end_bit - first_bit;
        }
        Ok(None)
    }

    /// The first free block in `[from, to)`, else in `[low, from)`: a
    /// search from `from` that wraps around inside `low..to`.
    fn take_free_wrapping(&mut self, low: u32, from: u32, to: u32) -> Result<Option<u32>> {
        match self.take_free_between(from, to)? {
            Some(block) => Ok(Some(block)),
            None => self.take_free_between(low, from),
        }
    }

    /// Allocates one data block for inode `ino`: the first free one after
    /// `goal` in the goal's region; else in its group's region, from the
    /// region's hint, wrapping around inside it; else anywhere, from where
    /// the group last spilled to. Staying inside the region keeps files
    /// of different top-level directories apart on disk, in the bitmap
    /// and in the cache, however long they run (docs/DESIGN.md §5.3). The
    /// block is marked used; its contents are the caller's business.
    pub fn allocate_block(&mut self, ino: u32, goal: Option<u32>) -> Result<u32> {
        self.check_writable()?;
        let volume = self.volume;
        let allocator = &volume.allocator;
        let first = volume.geometry.first_data_block();
        let end = volume.geometry.block_count;
        let group = allocator.group_of(ino);
        let region = &allocator.regions[group as usize].0;
        let mut found = None;
        if let Some(goal) = goal.filter(|goal| (first..end).contains(goal)) {
            found = self.take_free_between(goal, allocator.region_end(goal))?;
        }
        let epoch = allocator.free_epoch.0.epoch.load(Ordering::SeqCst);
        if found.is_none() && region.start < region.end && region.full_at.load(Ordering::Relaxed) != epoch {
            let hint = region.hint.load(Ordering::Relaxed).clamp(region.start, region.end - 1);
            found = self.take_free_wrapping(region.start, hint, region.end)?;
            if found.is_none() {
                region.full_at.store(epoch, Ordering::SeqCst);
                allocator.free_epoch.0.watched.store(true, Ordering::SeqCst);
            }
        }
        if found.is_none() {
            let spill = region.spill.load(Ordering::Relaxed).clamp(first, end - 1);
            found = self.take_free_wrapping(first, spill, end)?;
        }
        let block = found.ok_or(Error::NoSpace)?;
        // The group's next search without a goal starts past it.
        if (region.start..region.end).contains(&block) {
            region.hint.store(next_within(block, region.start, region.end), Ordering::Relaxed);
        } else {
            region.spill.store(next_within(block, first, end), Ordering::Relaxed);
        }
        if volume.has_journal() {
            volume.note_allocated(block);
        }
        self.record(Undo::BlockAllocated(block, group));
        self.count_blocks(-1);
        volume.note_head_changed();
        Ok(block)
    }

    /// Allocates `count` consecutive blocks (a journal's run), first fit.
    /// Only alone (an exclusive transaction): it reads, then sets.
    pub fn allocate_run(&mut self, count: u32) -> Result<u32> {
        self.check_writable()?;
        let volume = self.volume;
        if volume.allocator.free_blocks() < count {
            return Err(Error::NoSpace);
        }
        let end = volume.geometry.block_count;
        let mut start = volume.geometry.first_data_block();
        while start + count <= end {
            let mut length = 0;
            while length < count && !self.block_in_use(start + length)? {
                length += 1;
            }
            if length == count {
                for block in start..start + count {
                    let (bitmap_block, bit) = self.geometry().bitmap_location(block);
                    self.modify_shared(bitmap_block, |bytes| bytes[(bit / 8) as usize] |= 1u8 << (bit % 8))?;
                    self.record(Undo::BlockAllocated(block, 0));
                    self.discard(block);
                }
                self.count_blocks(-(count as i64));
                volume.note_head_changed();
                return Ok(start);
            }
            start += length + 1;
        }
        Err(Error::NoSpace)
    }

    /// Returns a data block to the free pool once the operation succeeds,
    /// and drops it from the cache. With a journal the bitmap bit clears
    /// only at commit (see `volume::PendingFrees`). Whether the block is
    /// in use is checked once the operation is done (`Tx::finish`), a
    /// bitmap block at a time.
    pub fn free_block(&mut self, block: u32) -> Result<()> {
        if !self.geometry().is_data_block(block) {
            return Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)));
        }
        self.discard(block);
        self.free_later(block);
        Ok(())
    }

    /// Checks that every block in `frees` (sorted) is marked used: freeing
    /// a free block means two owners or a stale pointer, and counting it
    /// again would inflate free_blocks. Without a journal the bitmap
    /// blocks are pinned too, since their bits clear when the operation
    /// ends, which must not fail.
    pub(crate) fn check_frees(&mut self, frees: &[u32]) -> Result<()> {
        let pin = !self.volume.has_journal();
        let geometry = self.geometry();
        let mut rest = frees;
        while let Some(&first) = rest.first() {
            let (bitmap_block, _) = geometry.bitmap_location(first);
            let count =
                rest.iter().take_while(|&&block| geometry.bitmap_location(block).0 == bitmap_block).count();
            let (these, others) = rest.split_at(count);
            let free = self.read_block(bitmap_block, |bytes| {
                these.iter().copied().find(|&block| {
                    let (_, bit) = geometry.bitmap_location(block);
                    bytes[(bit / 8) as usize] & (1 << (bit % 8)) == 0
                })
            })?;
            if let Some(block) = free {
                return Err(Error::corrupt(Corruption::DoubleFree(block), None, Some(block)));
            }
            if pin {
                self.pin_block(bitmap_block)?;
            }
            rest = others;
        }
        Ok(())
    }

    /// Takes a free inode number (never 0, the root), searching `goal`'s
    /// group from its hint, then the groups after it, and writes `inode`
    /// there, which must have `links_count >= 1`.
    pub fn allocate_inode(&mut self, goal: InodeGoal, inode: &DiskInode) -> Result<u32> {
        self.check_writable()?;
        debug_assert!(!inode.is_free());
        let volume = self.volume;
        let allocator = &volume.allocator;
        let (first_group, rotor) = match goal {
            InodeGoal::Near(parent) => (allocator.group_of(parent), None),
            InodeGoal::NextGroup => {
                let rotor = allocator.dir_rotor.fetch_add(1, Ordering::Relaxed);
                (rotor % allocator.count, Some(rotor))
            }
        };
        // The goal's group, then on from the last group a spill found
        // room in.
        let spill = allocator.spill.load(Ordering::Relaxed);
        let others = (0..allocator.count).map(|step| (spill + step) % allocator.count);
        let order = core::iter::once(first_group).chain(others.filter(|&group| group != first_group));
        for group in order {
            let mut state = allocator.inode_groups[group as usize].0.lock();
            let (low, high) = allocator.inodes_of(group);
            let from = state.hint.clamp(low, high);
            let Some(ino) = self.free_inode_between(from, high, &state.freeing)? else {
                // Full: below the hint by the hint's rule, and from it on.
                state.hint = high;
                continue;
            };
            self.put_inode(ino, inode)?;
            let taken = InodeTaken { ino, hint: state.hint, rotor };
            state.hint = ino + 1;
            drop(state);
            if group != first_group {
                allocator.spill.store(group, Ordering::Relaxed);
            }
            self.record(Undo::InodeAllocated(taken));
            self.count_inodes(-1);
            volume.note_head_changed();
            return Ok(ino);
        }
        if let Some(rotor) = rotor {
            allocator.rewind_rotor(rotor);
        }
        Err(Error::NoSpace)
    }

    /// The first free inode in `[from, to)` (one group's), a table block
    /// at a time: no links, not an orphan, not being freed, not the
    /// journal. The group's lock is held, so it stays free.
    fn free_inode_between(&mut self, from: u32, to: u32, freeing: &HashSet<u32>) -> Result<Option<u32>> {
        let volume = self.volume;
        let journal = volume.journal_inode();
        let mut ino = from;
        while ino < to {
            let (block, first_slot) = volume.geometry.inode_location(ino);
            let in_block = (INODES_PER_BLOCK - first_slot as u32).min(to - ino);
            // A slot with no links first, under the block's lock; then the
            // sets, whose locks come after it in no order (an inode joins
            // them before it loses its last link).
            let unlinked = self.read_block(block, |bytes| {
                (0..in_block)
                    .find(|&offset| DiskInode::links_in_slot(bytes, first_slot + offset as usize) == 0)
            })?;
            let Some(offset) = unlinked else {
                ino += in_block;
                continue;
            };
            let candidate = ino + offset;
            if journal != Some(candidate) && !freeing.contains(&candidate) && !volume.is_orphan(candidate) {
                return Ok(Some(candidate));
            }
            ino = candidate + 1;
        }
        Ok(None)
    }

    /// Frees inode `ino`, writing `freed` (no links) in its place and
    /// taking it off the orphan chain; it counts as free, and may be
    /// taken again, once the operation succeeds.
    pub fn free_inode(&mut self, ino: u32, freed: &DiskInode) -> Result<()> {
        debug_assert!(freed.is_free());
        let allocator = &self.volume.allocator;
        allocator.inode_groups[allocator.group_of(ino) as usize].0.lock().freeing.insert(ino);
        self.record(Undo::InodeFreeing(ino));
        self.remove_orphan(ino)?;
        self.put_inode(ino, freed)?;
        self.count_free_later(ino);
        Ok(())
    }
}

/// The first clear bit of `bytes` in `[from, to)`, a byte at a time over
/// full bytes.
fn first_clear_bit(bytes: &[u8], from: u32, to: u32) -> Option<u32> {
    let mut bit = from;
    while bit < to {
        if bit % 8 == 0 && to - bit >= 8 && bytes[(bit / 8) as usize] == 0xff {
            bit += 8;
            continue;
        }
        if bytes[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_groups_get_regions_under_different_bitmap_blocks() {
        // 65,536 blocks: two bitmap blocks; 16,128 usable inodes: 24 groups.
        let geometry = Geometry::new(65536, 16384).unwrap();
        assert_eq!(Allocator::new(&geometry, 0, 0).count, 24);
        let dealt = regions(&geometry, Parts::new(&geometry, 24));
        let bitmap_block = |group: usize| geometry.bitmap_location(dealt[group].0).0;
        assert_ne!(bitmap_block(0), bitmap_block(1));
        assert_eq!(bitmap_block(0), bitmap_block(2));
        // The regions cut the data area: each part goes to exactly one group.
        let mut sorted = dealt.clone();
        sorted.sort_unstable();
        assert_eq!(sorted[0].0, geometry.first_data_block());
        assert_eq!(sorted[23].1, geometry.block_count);
        assert!(sorted.windows(2).all(|pair| pair[0].1 == pair[1].0 && pair[0].0 < pair[0].1));
        // A small image is one bitmap block: the regions are in order.
        let small = Geometry::new(4096, 2048).unwrap();
        assert!(regions(&small, Parts::new(&small, 4)).windows(2).all(|pair| pair[0].1 == pair[1].0));
    }

    #[test]
    fn every_data_block_falls_in_the_part_that_holds_it() {
        for (blocks, count) in [(65536, 24), (4096, 4), (100, 7), (70, 40), (1 << 20, 97)] {
            let geometry = Geometry::new(blocks, 2048.min(blocks)).unwrap();
            let parts = Parts::new(&geometry, count);
            for block in geometry.first_data_block()..geometry.block_count {
                let rank = parts.rank_of(block);
                assert!(
                    parts.start(rank) <= block && block < parts.start(rank + 1),
                    "{blocks} {count} {block}"
                );
            }
        }
    }
}
