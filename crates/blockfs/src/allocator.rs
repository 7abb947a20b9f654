//! Block and inode allocation.
//!
//! Blocks: the bitmap is searched from a goal (the block after the file's
//! previous block, so sequential writes get contiguous runs), falling back
//! to a roving hint so searches do not rescan from the start each time.
//! Inodes: free means `links_count == 0`; the search starts at a roving
//! hint and skips unlinked-but-open inodes.

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::geometry::BITS_PER_BITMAP_BLOCK;
use crate::volume::Volume;

impl<D: BlockDevice> Volume<D> {
    /// Whether `block` is marked used in the bitmap.
    pub fn block_in_use(&mut self, block: u32) -> Result<bool> {
        let (bitmap_block, bit) = self.geometry.bitmap_location(block);
        let bytes = self.block(bitmap_block)?;
        Ok(bytes[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    pub(crate) fn set_block_bit(&mut self, block: u32, used: bool) -> Result<()> {
        let (bitmap_block, bit) = self.geometry.bitmap_location(block);
        let bytes = self.block_mut(bitmap_block)?;
        let mask = 1u8 << (bit % 8);
        if used {
            bytes[(bit / 8) as usize] |= mask;
        } else {
            bytes[(bit / 8) as usize] &= !mask;
        }
        Ok(())
    }

    /// Finds the first clear bit in `[from, to)`, scanning whole bitmap
    /// blocks a byte at a time.
    fn find_free_between(&mut self, from: u32, to: u32) -> Result<Option<u32>> {
        let mut block = from;
        while block < to {
            let (bitmap_block, first_bit) = self.geometry.bitmap_location(block);
            let bits_here = (BITS_PER_BITMAP_BLOCK - first_bit).min(to - block);
            let bytes = self.block(bitmap_block)?;
            let mut bit = first_bit;
            let end_bit = first_bit + bits_here;
            while bit < end_bit {
                if bit % 8 == 0 && end_bit - bit >= 8 && bytes[(bit / 8) as usize] == 0xff {
                    bit += 8;
                    continue;
                }
                if bytes[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                    return Ok(Some(block + (bit - first_bit)));
                }
                bit += 1;
            }
            block += bits_here;
        }
        Ok(None)
    }

    /// Allocates one data block, preferring `goal` and what follows it.
    /// The block is marked used; its contents are the caller's business.
    pub fn allocate_block(&mut self, goal: Option<u32>) -> Result<u32> {
        self.check_writable()?;
        if self.superblock.free_blocks == 0 {
            return Err(Error::NoSpace);
        }
        let first = self.geometry.first_data_block();
        let end = self.geometry.block_count;
        let start = match goal {
            Some(goal) if goal >= first && goal < end => goal,
            _ => self.block_hint.clamp(first, end - 1),
        };
        let found = match self.find_free_between(start, end)? {
            Some(block) => Some(block),
            None => self.find_free_between(first, start)?,
        };
        let block = found.ok_or(Error::NoSpace)?;
        self.set_block_bit(block, true)?;
        self.superblock.free_blocks -= 1;
        self.superblock_dirty = true;
        self.block_hint = if block + 1 < end { block + 1 } else { first };
        Ok(block)
    }

    /// Allocates `count` consecutive blocks (a journal's run), first fit.
    pub fn allocate_run(&mut self, count: u32) -> Result<u32> {
        self.check_writable()?;
        if self.superblock.free_blocks < count {
            return Err(Error::NoSpace);
        }
        let end = self.geometry.block_count;
        let mut start = self.geometry.first_data_block();
        while start + count <= end {
            let mut length = 0;
            while length < count && !self.block_in_use(start + length)? {
                length += 1;
            }
            if length == count {
                for block in start..start + count {
                    self.set_block_bit(block, true)?;
                    self.store_mut().discard(block);
                }
                self.superblock.free_blocks -= count;
                self.superblock_dirty = true;
                return Ok(start);
            }
            start += length + 1;
        }
        Err(Error::NoSpace)
    }

    /// Returns a data block to the free pool and drops it from the cache.
    /// With a journal the bitmap bit clears only at commit (see
    /// `PendingFrees`).
    pub fn free_block(&mut self, block: u32) -> Result<()> {
        if !self.geometry.is_data_block(block) {
            return Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)));
        }
        if !self.block_in_use(block)? || self.pending_frees().contains(block) {
            // Freeing a free block means two owners or a stale pointer;
            // counting it again would inflate free_blocks.
            return Err(Error::corrupt(Corruption::DoubleFree(block), None, Some(block)));
        }
        self.store_mut().discard(block);
        if self.journal.is_some() {
            self.defer_free(block);
            return Ok(());
        }
        self.set_block_bit(block, false)?;
        self.superblock.free_blocks += 1;
        self.superblock_dirty = true;
        Ok(())
    }

    /// Finds a free inode number (never 0, the root). The caller must
    /// write the new inode with `links_count >= 1`.
    pub fn allocate_inode(&mut self) -> Result<u32> {
        self.check_writable()?;
        if self.superblock.free_inodes == 0 {
            return Err(Error::NoSpace);
        }
        let usable = self.geometry.usable_inodes();
        let start = self.inode_hint.clamp(1, usable.max(2) - 1);
        let candidates = (start..usable).chain(1..start);
        for ino in candidates {
            if self.is_orphan(ino) || self.journal_inode == Some(ino) {
                continue;
            }
            if self.read_inode(ino)?.is_free() {
                self.superblock.free_inodes -= 1;
                self.superblock_dirty = true;
                self.inode_hint = ino + 1;
                return Ok(ino);
            }
        }
        Err(Error::NoSpace)
    }

    /// Counts an inode (already written with no links) as free again.
    pub fn release_inode(&mut self, ino: u32) {
        self.superblock.free_inodes = (self.superblock.free_inodes + 1).min(self.geometry.usable_inodes());
        self.superblock_dirty = true;
        if ino < self.inode_hint {
            self.inode_hint = ino.max(1);
        }
    }
}
