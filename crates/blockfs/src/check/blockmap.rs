//! Inode block maps as the checker sees them: a walk over every pointer
//! (direct, single and double indirect) that lets the caller keep, skip,
//! clear or replace each one; a cursor that maps logical blocks for the
//! directory readers; and the one write the repairs need, mapping a new
//! block at a logical index.
//!
//! Work is bounded by the map, never by `size`: holes cost nothing, the
//! walk descends at most two levels, and a block claimed twice is not
//! descended into twice (the caller says `Skip`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::context::Checker;
use crate::bmap::{self, path_of, Path, PointerSource, DOUBLE_START, PER_BLOCK, SINGLE_START};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::inode::DiskInode;
use crate::format::{le_u32, put_u32, Block, BLOCK_SIZE, POINTERS_PER_BLOCK};
/// Logical blocks a u32 size can reach: ⌈(2³² − 1) / 4096⌉.
pub(super) const SIZE_LIMIT_BLOCKS: u64 = 1 << 20;

/// Logical blocks a size covers.
pub(super) fn blocks_for(size: u32) -> u64 {
    (size as u64).div_ceil(BLOCK_SIZE as u64)
}

/// What a pointer points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    Data,
    /// A single-indirect block (the inode's, or one under the double).
    Single,
    Double,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Pointer {
    pub block: u32,
    pub level: Level,
    /// The first logical block it maps.
    pub logical: u64,
}

/// The visitor's decision about one pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Keep it, and descend into it if it is an indirect block.
    Keep,
    /// Keep it but do not descend.
    Skip,
    /// Set it to 0 (a hole).
    Clear,
    /// Point it at another block.
    Replace(u32),
}

pub(super) type Visitor<'v, 'a, D> = dyn FnMut(&mut Checker<'a, D>, Pointer) -> Result<Action> + 'v;

/// Applies `action` to a pointer; returns whether it changed.
fn apply(pointer: &mut u32, action: Action) -> bool {
    let new = match action {
        Action::Keep | Action::Skip => return false,
        Action::Clear => 0,
        Action::Replace(block) => block,
    };
    *pointer = new;
    true
}

/// Visits every non-zero pointer of `inode`'s map in logical order (the
/// triple-indirect pointer is not part of the map). Changes to the inode's
/// own pointers are made in `inode`; changes inside indirect blocks are
/// written back at once.
pub(super) fn walk_map<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    inode: &mut DiskInode,
    visit: &mut Visitor<'_, 'a, D>,
) -> Result<()> {
    for (index, pointer) in inode.direct.iter_mut().enumerate() {
        if *pointer != 0 {
            let found = Pointer { block: *pointer, level: Level::Data, logical: index as u64 };
            apply(pointer, visit(ck, found)?);
        }
    }
    for (pointer, level, logical) in [
        (&mut inode.indirect, Level::Single, SINGLE_START),
        (&mut inode.double_indirect, Level::Double, DOUBLE_START),
    ] {
        if *pointer != 0 {
            let found = Pointer { block: *pointer, level, logical };
            let action = visit(ck, found)?;
            if action == Action::Keep && ck.geometry.is_data_block(found.block) {
                walk_indirect(ck, found, visit)?;
            }
            apply(pointer, action);
        }
    }
    Ok(())
}

/// Visits the pointers inside indirect block `parent` (recursing once,
/// from a double-indirect block into its single-indirect children).
fn walk_indirect<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    parent: Pointer,
    visit: &mut Visitor<'_, 'a, D>,
) -> Result<()> {
    let (level, span) = match parent.level {
        Level::Double => (Level::Single, PER_BLOCK),
        _ => (Level::Data, 1),
    };
    let mut block = ck.read_new(parent.block)?;
    let mut dirty = false;
    for index in 0..POINTERS_PER_BLOCK {
        let mut pointer = le_u32(&block[..], index * 4);
        if pointer == 0 {
            continue;
        }
        let found = Pointer { block: pointer, level, logical: parent.logical + index as u64 * span };
        let action = visit(ck, found)?;
        if action == Action::Keep && level == Level::Single && ck.geometry.is_data_block(pointer) {
            walk_indirect(ck, found, visit)?;
        }
        if apply(&mut pointer, action) {
            put_u32(&mut block[..], index * 4, pointer);
            dirty = true;
        }
    }
    if dirty {
        ck.write_block(parent.block, &block)?;
    }
    Ok(())
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

/// A zeroed indirect block, counted in the inode's `blocks`.
fn new_indirect<D: BlockDevice>(ck: &mut Checker<'_, D>, inode: &mut DiskInode) -> Result<Option<u32>> {
    let Some(block) = ck.allocate_block() else {
        return Ok(None);
    };
    ck.write_block(block, &[0u8; BLOCK_SIZE])?;
    inode.blocks = inode.blocks.saturating_add(1);
    Ok(Some(block))
}

/// Pointer `index` of indirect block `parent`, allocating a zeroed child
/// block when it is a hole.
fn child_or_new<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    inode: &mut DiskInode,
    parent: u32,
    index: usize,
) -> Result<Option<u32>> {
    let mut block = ck.read_new(parent)?;
    let existing = le_u32(&block[..], index * 4);
    if existing != 0 {
        return Ok(Some(existing));
    }
    let Some(child) = new_indirect(ck, inode)? else {
        return Ok(None);
    };
    put_u32(&mut block[..], index * 4, child);
    ck.write_block(parent, &block)?;
    Ok(Some(child))
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
    let (slot_block, index) = match path_of(logical) {
        None => return Ok(false),
        Some(Path::Direct(index)) => {
            inode.direct[index] = physical;
            return Ok(true);
        }
        Some(Path::Single(index)) => {
            if inode.indirect == 0 {
                match new_indirect(ck, inode)? {
                    Some(block) => inode.indirect = block,
                    None => return Ok(false),
                }
            }
            (inode.indirect, index)
        }
        Some(Path::Double(outer, inner)) => {
            if inode.double_indirect == 0 {
                match new_indirect(ck, inode)? {
                    Some(block) => inode.double_indirect = block,
                    None => return Ok(false),
                }
            }
            let double = inode.double_indirect;
            match child_or_new(ck, inode, double, outer)? {
                Some(middle) => (middle, inner),
                None => return Ok(false),
            }
        }
    };
    let mut block = ck.read_new(slot_block)?;
    put_u32(&mut block[..], index * 4, physical);
    ck.write_block(slot_block, &block)?;
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
