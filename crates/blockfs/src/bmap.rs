//! Logical → physical block mapping through the inode's 12 direct
//! pointers, one single-indirect and one double-indirect block. A zero
//! pointer is a hole. The triple-indirect pointer is never needed: sizes
//! are u32, and direct + single + double already cover 4 GiB.

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::inode::{DiskInode, DIRECT_BLOCKS};
use crate::format::{le_u32, put_u32, POINTERS_PER_BLOCK};
use crate::volume::Volume;

const PER_BLOCK: u64 = POINTERS_PER_BLOCK as u64;
const SINGLE_START: u64 = DIRECT_BLOCKS as u64;
const DOUBLE_START: u64 = SINGLE_START + PER_BLOCK;
/// One past the last logical block the inode can address.
pub const MAX_LOGICAL_BLOCKS: u64 = DOUBLE_START + PER_BLOCK * PER_BLOCK;

/// Where a logical block's pointer lives.
enum Path {
    Direct(usize),
    Single(usize),
    Double(usize, usize),
}

fn path_of(logical: u64) -> Option<Path> {
    if logical < SINGLE_START {
        Some(Path::Direct(logical as usize))
    } else if logical < DOUBLE_START {
        Some(Path::Single((logical - SINGLE_START) as usize))
    } else if logical < MAX_LOGICAL_BLOCKS {
        let rest = logical - DOUBLE_START;
        Some(Path::Double((rest / PER_BLOCK) as usize, (rest % PER_BLOCK) as usize))
    } else {
        None
    }
}

impl<D: BlockDevice> Volume<D> {
    /// Validates a pointer read from an inode or indirect block.
    fn checked_pointer(&self, pointer: u32, ino: u32) -> Result<u32> {
        if pointer == 0 || self.geometry.is_data_block(pointer) {
            Ok(pointer)
        } else {
            Err(Error::corrupt(Corruption::BlockOutOfRange(pointer), Some(ino), Some(pointer)))
        }
    }

    fn pointer_in(&mut self, block: u32, index: usize, ino: u32) -> Result<u32> {
        let pointer = le_u32(self.block(block)?, index * 4);
        self.checked_pointer(pointer, ino)
    }

    /// Physical block of `logical`, or `None` for a hole.
    pub fn map_block(&mut self, ino: u32, inode: &DiskInode, logical: u64) -> Result<Option<u32>> {
        let physical = match path_of(logical) {
            None => 0,
            Some(Path::Direct(index)) => self.checked_pointer(inode.direct[index], ino)?,
            Some(Path::Single(index)) => {
                let indirect = self.checked_pointer(inode.indirect, ino)?;
                if indirect == 0 {
                    0
                } else {
                    self.pointer_in(indirect, index, ino)?
                }
            }
            Some(Path::Double(outer, inner)) => {
                let double = self.checked_pointer(inode.double_indirect, ino)?;
                let middle = if double == 0 { 0 } else { self.pointer_in(double, outer, ino)? };
                if middle == 0 {
                    0
                } else {
                    self.pointer_in(middle, inner, ino)?
                }
            }
        };
        Ok((physical != 0).then_some(physical))
    }

    /// A fresh zeroed block for an indirect level, counted in `blocks`.
    fn new_indirect(&mut self, inode: &mut DiskInode, goal: Option<u32>) -> Result<u32> {
        let block = self.allocate_block(goal)?;
        self.block_overwrite(block)?;
        inode.blocks += 1;
        Ok(block)
    }

    /// Pointer slot `index` of indirect block `parent`, allocating a zeroed
    /// child block when it is a hole.
    fn child_or_new(
        &mut self,
        inode: &mut DiskInode,
        ino: u32,
        parent: u32,
        index: usize,
        goal: Option<u32>,
    ) -> Result<u32> {
        let existing = self.pointer_in(parent, index, ino)?;
        if existing != 0 {
            return Ok(existing);
        }
        let child = self.new_indirect(inode, goal)?;
        put_u32(self.block_mut(parent)?, index * 4, child);
        Ok(child)
    }

    /// Physical block of `logical`, allocating it (and any indirect block
    /// on the way) when it is a hole. Returns the block and whether it was
    /// newly allocated — a new block's contents are undefined until the
    /// caller writes it whole or zeroes it.
    pub fn map_or_allocate(
        &mut self,
        ino: u32,
        inode: &mut DiskInode,
        logical: u64,
        goal: Option<u32>,
    ) -> Result<(u32, bool)> {
        if let Some(physical) = self.map_block(ino, inode, logical)? {
            return Ok((physical, false));
        }
        let path = path_of(logical).ok_or(Error::FileTooBig)?;
        // Indirect blocks go just before the data they map, keeping runs.
        let (slot_block, slot_index) = match path {
            Path::Direct(index) => {
                let block = self.allocate_block(goal)?;
                inode.direct[index] = block;
                inode.blocks += 1;
                return Ok((block, true));
            }
            Path::Single(index) => {
                if inode.indirect == 0 {
                    inode.indirect = self.new_indirect(inode, goal)?;
                }
                (inode.indirect, index)
            }
            Path::Double(outer, inner) => {
                if inode.double_indirect == 0 {
                    inode.double_indirect = self.new_indirect(inode, goal)?;
                }
                let double = inode.double_indirect;
                (self.child_or_new(inode, ino, double, outer, goal)?, inner)
            }
        };
        let block = self.allocate_block(goal)?;
        inode.blocks += 1;
        put_u32(self.block_mut(slot_block)?, slot_index * 4, block);
        Ok((block, true))
    }

    /// The highest logical block whose path holds any allocated block (a
    /// data block, or an indirect block left empty), or `None` when the
    /// inode maps nothing. Freeing from there down lets a huge truncation
    /// proceed in steps that each fit one transaction.
    pub fn last_mapped(&mut self, ino: u32, inode: &DiskInode) -> Result<Option<u64>> {
        let double = self.checked_pointer(inode.double_indirect, ino)?;
        if double != 0 {
            for outer in (0..POINTERS_PER_BLOCK).rev() {
                let middle = self.pointer_in(double, outer, ino)?;
                if middle == 0 {
                    continue;
                }
                let base = DOUBLE_START + outer as u64 * PER_BLOCK;
                let inner = self.last_pointer(middle, ino)?;
                return Ok(Some(base + inner.unwrap_or(0) as u64));
            }
            return Ok(Some(DOUBLE_START));
        }
        let single = self.checked_pointer(inode.indirect, ino)?;
        if single != 0 {
            let index = self.last_pointer(single, ino)?;
            return Ok(Some(SINGLE_START + index.unwrap_or(0) as u64));
        }
        Ok(inode.direct.iter().rposition(|&pointer| pointer != 0).map(|index| index as u64))
    }

    /// Index of the last non-zero pointer in an indirect block.
    fn last_pointer(&mut self, block: u32, ino: u32) -> Result<Option<usize>> {
        for index in (0..POINTERS_PER_BLOCK).rev() {
            if self.pointer_in(block, index, ino)? != 0 {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    /// Frees every data and indirect block mapping logical blocks at or
    /// past `keep`, and indirect blocks left with no pointers.
    pub fn truncate_blocks(&mut self, ino: u32, inode: &mut DiskInode, keep: u64) -> Result<()> {
        for index in (keep.min(SINGLE_START) as usize)..DIRECT_BLOCKS {
            let pointer = self.checked_pointer(inode.direct[index], ino)?;
            if pointer != 0 {
                self.free_block(pointer)?;
                inode.direct[index] = 0;
                inode.blocks = inode.blocks.saturating_sub(1);
            }
        }
        let single = self.checked_pointer(inode.indirect, ino)?;
        if self.truncate_tree(ino, inode, single, 1, SINGLE_START, keep)? {
            inode.indirect = 0;
        }
        let double = self.checked_pointer(inode.double_indirect, ino)?;
        if self.truncate_tree(ino, inode, double, 2, DOUBLE_START, keep)? {
            inode.double_indirect = 0;
        }
        Ok(())
    }

    /// Truncates the subtree under indirect block `block` (of `level` 1 or
    /// 2) covering logical blocks from `base`. Returns whether `block` was
    /// freed, so the caller clears its pointer.
    fn truncate_tree(
        &mut self,
        ino: u32,
        inode: &mut DiskInode,
        block: u32,
        level: u32,
        base: u64,
        keep: u64,
    ) -> Result<bool> {
        let child_span = PER_BLOCK.pow(level - 1);
        if block == 0 || keep >= base + child_span * PER_BLOCK {
            return Ok(false);
        }
        let mut any_left = false;
        for index in 0..POINTERS_PER_BLOCK {
            let child = self.pointer_in(block, index, ino)?;
            if child == 0 {
                continue;
            }
            let child_base = base + index as u64 * child_span;
            let freed = if level == 1 {
                if child_base >= keep {
                    self.free_block(child)?;
                    inode.blocks = inode.blocks.saturating_sub(1);
                    true
                } else {
                    false
                }
            } else {
                self.truncate_tree(ino, inode, child, level - 1, child_base, keep)?
            };
            if freed {
                put_u32(self.block_mut(block)?, index * 4, 0);
            } else {
                any_left = true;
            }
        }
        if any_left {
            return Ok(false);
        }
        self.free_block(block)?;
        inode.blocks = inode.blocks.saturating_sub(1);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cover_the_three_levels() {
        assert!(matches!(path_of(0), Some(Path::Direct(0))));
        assert!(matches!(path_of(11), Some(Path::Direct(11))));
        assert!(matches!(path_of(12), Some(Path::Single(0))));
        assert!(matches!(path_of(1035), Some(Path::Single(1023))));
        assert!(matches!(path_of(1036), Some(Path::Double(0, 0))));
        assert!(matches!(path_of(1036 + 1025), Some(Path::Double(1, 1))));
        assert!(path_of(MAX_LOGICAL_BLOCKS).is_none());
        // The largest u32 size fits.
        assert!((u32::MAX as u64 / 4096) < MAX_LOGICAL_BLOCKS);
    }
}
