//! Block and inode allocation, under the allocation lock
//! (`Volume::allocation`).
//!
//! Blocks: the bitmap is searched from a goal (the block after the file's
//! previous block, so sequential writes get contiguous runs), falling back
//! to a roving hint so searches do not rescan from the start each time.
//! Inodes: free means `links_count == 0`; the search starts at a goal or a
//! roving hint and skips orphans (unlinked but still held) and inodes an
//! operation in progress is freeing. A taken inode is written under the
//! lock, so two operations never take the same one.
//!
//! Every allocation is undone by its inverse (the bit cleared, the count
//! given back), since other operations change the same bitmap block and
//! counters meanwhile; frees wait for the operation's end (`Tx::finish`).

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::geometry::BITS_PER_BITMAP_BLOCK;
use crate::format::inode::{DiskInode, INODES_PER_BLOCK};
use crate::tx::{Tx, Undo};

impl<D: BlockDevice> Tx<'_, D> {
    /// Whether `block` is marked used in the bitmap.
    pub fn block_in_use(&mut self, block: u32) -> Result<bool> {
        let (bitmap_block, bit) = self.geometry().bitmap_location(block);
        self.read_block(bitmap_block, |bytes| bytes[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    fn set_block_bit(&mut self, block: u32) -> Result<()> {
        let (bitmap_block, bit) = self.geometry().bitmap_location(block);
        self.modify_shared(bitmap_block, |bytes| bytes[(bit / 8) as usize] |= 1u8 << (bit % 8))
    }

    /// Finds the first clear bit in `[from, to)`, scanning whole bitmap
    /// blocks a byte at a time.
    fn find_free_between(&mut self, from: u32, to: u32) -> Result<Option<u32>> {
        let mut block = from;
        while block < to {
            let (bitmap_block, first_bit) = self.geometry().bitmap_location(block);
            let bits_here = (BITS_PER_BITMAP_BLOCK - first_bit).min(to - block);
            let end_bit = first_bit + bits_here;
            let found = self.read_block(bitmap_block, |bytes| {
                let mut bit = first_bit;
                while bit < end_bit {
                    if bit % 8 == 0 && end_bit - bit >= 8 && bytes[(bit / 8) as usize] == 0xff {
                        bit += 8;
                        continue;
                    }
                    if bytes[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                        return Some(bit);
                    }
                    bit += 1;
                }
                None
            })?;
            if let Some(bit) = found {
                return Ok(Some(block + (bit - first_bit)));
            }
            block += bits_here;
        }
        Ok(None)
    }

    /// Allocates one data block, preferring `goal` and what follows it.
    /// The block is marked used; its contents are the caller's business.
    pub fn allocate_block(&mut self, goal: Option<u32>) -> Result<u32> {
        self.check_writable()?;
        let volume = self.volume;
        let mut allocation = volume.allocation.lock();
        if allocation.free_blocks == 0 {
            return Err(Error::NoSpace);
        }
        let first = volume.geometry.first_data_block();
        let end = volume.geometry.block_count;
        let start = match goal {
            Some(goal) if goal >= first && goal < end => goal,
            _ => allocation.block_hint.clamp(first, end - 1),
        };
        let found = match self.find_free_between(start, end)? {
            Some(block) => Some(block),
            None => self.find_free_between(first, start)?,
        };
        let block = found.ok_or(Error::NoSpace)?;
        self.set_block_bit(block)?;
        allocation.free_blocks -= 1;
        allocation.block_hint = if block + 1 < end { block + 1 } else { first };
        drop(allocation);
        self.record(Undo::BlockAllocated(block));
        volume.note_head_changed();
        Ok(block)
    }

    /// Allocates `count` consecutive blocks (a journal's run), first fit.
    pub fn allocate_run(&mut self, count: u32) -> Result<u32> {
        self.check_writable()?;
        let volume = self.volume;
        if volume.allocation.lock().free_blocks < count {
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
                let mut allocation = volume.allocation.lock();
                for block in start..start + count {
                    self.set_block_bit(block)?;
                    self.record(Undo::BlockAllocated(block));
                    self.discard(block);
                    allocation.free_blocks -= 1;
                }
                volume.note_head_changed();
                return Ok(start);
            }
            start += length + 1;
        }
        Err(Error::NoSpace)
    }

    /// Returns a data block to the free pool once the operation succeeds,
    /// and drops it from the cache. With a journal the bitmap bit clears
    /// only at commit (see `volume::PendingFrees`).
    pub fn free_block(&mut self, block: u32) -> Result<()> {
        if !self.geometry().is_data_block(block) {
            return Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)));
        }
        if !self.block_in_use(block)? {
            // Freeing a free block means two owners or a stale pointer;
            // counting it again would inflate free_blocks. (One already
            // pending is caught when the frees join the transaction.)
            return Err(Error::corrupt(Corruption::DoubleFree(block), None, Some(block)));
        }
        if !self.volume.has_journal() {
            // Its bit clears when the operation ends, which must not fail.
            let (bitmap_block, _) = self.geometry().bitmap_location(block);
            self.pin_block(bitmap_block)?;
        }
        self.discard(block);
        self.free_later(block);
        Ok(())
    }

    /// Takes a free inode number (never 0, the root), searching from
    /// `goal` (or the roving hint), and writes `inode` there, which must
    /// have `links_count >= 1`.
    pub fn allocate_inode(&mut self, goal: Option<u32>, inode: &DiskInode) -> Result<u32> {
        self.check_writable()?;
        debug_assert!(!inode.is_free());
        let volume = self.volume;
        let mut allocation = volume.allocation.lock();
        if allocation.free_inodes == 0 {
            return Err(Error::NoSpace);
        }
        let usable = volume.geometry.usable_inodes();
        let start = goal.unwrap_or(allocation.inode_hint).clamp(1, usable.max(2) - 1);
        let journal = volume.journal_inode();
        let orphans = volume.orphans.lock();
        let mut found = None;
        // Whole table blocks at a time: from `start` to the end, then from
        // the beginning back to `start`.
        for (from, to) in [(start, usable), (1, start)] {
            let mut ino = from;
            while ino < to && found.is_none() {
                let (block, first_slot) = volume.geometry.inode_location(ino);
                let in_block = (INODES_PER_BLOCK - first_slot as u32).min(to - ino);
                let taken = |candidate: u32| {
                    orphans.members.contains(&candidate)
                        || allocation.freeing.contains(&candidate)
                        || journal == Some(candidate)
                };
                found = self.read_block(block, |bytes| {
                    (0..in_block).map(|offset| ino + offset).find(|&candidate| {
                        let slot = first_slot + (candidate - ino) as usize;
                        DiskInode::decode_slot(bytes, slot).is_free() && !taken(candidate)
                    })
                })?;
                ino += in_block;
            }
            if found.is_some() {
                break;
            }
        }
        drop(orphans);
        let ino = found.ok_or(Error::NoSpace)?;
        self.put_inode(ino, inode)?;
        allocation.free_inodes -= 1;
        allocation.inode_hint = ino + 1;
        drop(allocation);
        self.record(Undo::InodeAllocated(ino));
        volume.note_head_changed();
        Ok(ino)
    }

    /// Frees inode `ino`, writing `freed` (no links) in its place and
    /// taking it off the orphan chain; it counts as free, and may be
    /// taken again, once the operation succeeds.
    pub fn free_inode(&mut self, ino: u32, freed: &DiskInode) -> Result<()> {
        debug_assert!(freed.is_free());
        self.volume.allocation.lock().freeing.insert(ino);
        self.record(Undo::InodeFreeing(ino));
        self.remove_orphan(ino)?;
        self.put_inode(ino, freed)?;
        self.count_free_later(ino);
        Ok(())
    }
}
