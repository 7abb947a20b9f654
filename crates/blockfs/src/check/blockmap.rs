//! Inode block maps as the checker sees them, read with the filesystem's
//! own readers (`bmap`): the walk over every pointer, whose visitor keeps,
//! skips, clears or replaces each one (a block claimed twice is not
//! descended into twice: the visitor says `Skip`); a cursor that maps
//! logical blocks for the directory readers; and the one write the
//! repairs need, mapping a new block at a logical index.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::context::Checker;
use crate::bmap::{self, path_of, MapWalk, MapWriter, PointerSource, DOUBLE_START, PER_BLOCK, SINGLE_START};
pub(super) use crate::bmap::{Action, Level, Pointer};
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::inode::DiskInode;
use crate::format::{le_u32, put_u32, Block, BLOCK_SIZE};
/// Logical blocks a u32 size can reach: ⌈(2³² − 1) / 4096⌉.
pub(super) const SIZE_LIMIT_BLOCKS: u64 = 1 << 20;

/// Logical blocks a size covers.
pub(super) fn blocks_for(size: u32) -> u64 {
    (size as u64).div_ceil(BLOCK_SIZE as u64)
}

pub(super) type Visitor<'v, 'a, D> = dyn FnMut(&mut Checker<'a, D>, Pointer) -> Result<Action> + 'v;

/// The checker's side of the shared walk: indirect blocks from the
/// device, descended into only when they lie in the data area, written
/// back at once when a pointer in them changed.
struct CheckerWalk<'c, 'v, 'a, D> {
    ck: &'c mut Checker<'a, D>,
    visit: &'c mut Visitor<'v, 'a, D>,
}

impl<D: BlockDevice> MapWalk for CheckerWalk<'_, '_, '_, D> {
    type Error = Error;

    fn visit(&mut self, pointer: Pointer) -> Result<Action> {
        (self.visit)(self.ck, pointer)
    }

    fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>> {
        if !self.ck.geometry.is_data_block(pointer.block) {
            return Ok(None);
        }
        self.ck.read_new(pointer.block).map(Some)
    }

    fn leave_indirect(&mut self, pointer: Pointer, contents: Box<Block>, changed: bool) -> Result<Action> {
        if changed {
            self.ck.write_block(pointer.block, &contents)?;
        }
        Ok(Action::Keep)
    }
}

/// Visits every non-zero pointer of `inode`'s map in logical order with
/// the shared walk (`bmap::walk_map`). Changes to the inode's own pointers
/// are made in `inode`; changes inside indirect blocks are written back at
/// once.
pub(super) fn walk_map<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    inode: &mut DiskInode,
    visit: &mut Visitor<'_, 'a, D>,
) -> Result<()> {
    bmap::walk_map(&mut CheckerWalk { ck, visit }, inode)
}

/// Maps logical blocks to physical ones for reading, with the
/// filesystem's map reader (`bmap`): pointers that may not be followed
/// (outside the data area, or claimed twice) read as holes. The indirect
/// blocks read last are kept, so a walk reads each one once.
pub(super) struct MapCursor {
    inode: DiskInode,
    /// Most recent first; a walk in logical order needs at most three (the
    /// single-indirect block, the double's root and one middle block).
    indirect: Vec<(u32, Box<Block>)>,
}

/// Indirect blocks a cursor keeps.
const KEPT_INDIRECT: usize = 3;

/// The checker's pointers, read from the device through a cursor's
/// indirect blocks.
struct CheckerPointers<'c, 'a, D> {
    ck: &'c mut Checker<'a, D>,
    indirect: &'c mut Vec<(u32, Box<Block>)>,
}

impl<D: BlockDevice> PointerSource for CheckerPointers<'_, '_, D> {
    fn follow(&mut self, pointer: u32) -> Result<bool> {
        Ok(self.ck.usable(pointer))
    }

    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
        if let Some(kept) = self.indirect.iter().position(|(kept, _)| *kept == block) {
            let entry = self.indirect.remove(kept);
            self.indirect.insert(0, entry);
        } else {
            let contents = self.ck.read_new(block)?;
            self.indirect.truncate(KEPT_INDIRECT - 1);
            self.indirect.insert(0, (block, contents));
        }
        Ok(le_u32(&self.indirect[0].1[..], index * 4))
    }
}

impl MapCursor {
    pub fn new(inode: &DiskInode) -> Self {
        MapCursor { inode: *inode, indirect: Vec::with_capacity(KEPT_INDIRECT) }
    }

    /// The first mapped logical block in `from..end`, with its physical
    /// block.
    pub fn next_mapped<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        from: u64,
        end: u64,
    ) -> Result<Option<(u64, u32)>> {
        let mut pointers = CheckerPointers { ck, indirect: &mut self.indirect };
        bmap::next_mapped(&mut pointers, &self.inode, from, end)
    }

    /// The physical block of `logical`, or `None` for a hole.
    pub fn lookup<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, logical: u64) -> Result<Option<u32>> {
        let mut pointers = CheckerPointers { ck, indirect: &mut self.indirect };
        bmap::map_logical(&mut pointers, &self.inode, logical)
    }
}

/// The checker as a map writer: indirect blocks from the bitmap it
/// rebuilds, written straight to the device.
struct CheckerWriter<'c, 'a, D> {
    ck: &'c mut Checker<'a, D>,
}

impl<D: BlockDevice> MapWriter for CheckerWriter<'_, '_, D> {
    fn new_indirect(&mut self, inode: &mut DiskInode) -> Result<Option<u32>> {
        let Some(block) = self.ck.allocate_block() else {
            return Ok(None);
        };
        self.ck.write_block(block, &[0u8; BLOCK_SIZE])?;
        inode.blocks = inode.blocks.saturating_add(1);
        Ok(Some(block))
    }

    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
        Ok(le_u32(&self.ck.read_new(block)?[..], index * 4))
    }

    fn set_pointer_in(&mut self, block: u32, index: usize, pointer: u32) -> Result<()> {
        let mut contents = self.ck.read_new(block)?;
        put_u32(&mut contents[..], index * 4, pointer);
        self.ck.write_block(block, &contents)
    }
}

/// Maps logical block `logical` of `inode` to `physical`, allocating the
/// indirect blocks on the way. Returns false when out of space or past the
/// map. The caller counts `physical` in `blocks` and writes the inode.
pub(super) fn set_mapping<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    inode: &mut DiskInode,
    logical: u64,
    physical: u32,
) -> Result<bool> {
    let Some(path) = path_of(logical) else {
        return Ok(false);
    };
    let mut writer = CheckerWriter { ck };
    let Some(slot) = bmap::slot_for(&mut writer, inode, path)? else {
        return Ok(false);
    };
    bmap::set_slot(&mut writer, inode, slot, physical)?;
    Ok(true)
}

/// Indirect blocks a map of `data_blocks` consecutive blocks needs.
pub(super) fn index_blocks(data_blocks: u64) -> u64 {
    if data_blocks <= SINGLE_START {
        0
    } else if data_blocks <= DOUBLE_START {
        1
    } else {
        2 + (data_blocks - DOUBLE_START).div_ceil(PER_BLOCK)
    }
}

/// Gives back every block of a map (the directory it held was rewritten
/// elsewhere).
pub(super) fn release_map<D: BlockDevice>(ck: &mut Checker<'_, D>, inode: &DiskInode) -> Result<()> {
    let mut copy = *inode;
    walk_map(ck, &mut copy, &mut |ck, pointer| {
        if !ck.usable(pointer.block) {
            return Ok(Action::Skip);
        }
        ck.release_block(pointer.block);
        Ok(Action::Keep)
    })
}

/// Notes every block of a map a repair is about to drop unclaimed (an
/// inode freed before its blocks were counted).
pub(super) fn forget_map<D: BlockDevice>(ck: &mut Checker<'_, D>, inode: &DiskInode) -> Result<()> {
    let mut copy = *inode;
    walk_map(ck, &mut copy, &mut |ck, pointer| {
        ck.drop_block(pointer.block);
        Ok(Action::Keep)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_blocks_per_level() {
        assert_eq!(index_blocks(12), 0);
        assert_eq!(index_blocks(13), 1);
        assert_eq!(index_blocks(1036), 1);
        assert_eq!(index_blocks(1037), 3);
        assert_eq!(index_blocks(1036 + 1025), 4);
    }
}
