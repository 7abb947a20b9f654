//! Reading directories straight from the device, in either layout: the
//! block rule (records never cross a 4 KiB boundary) or the older host
//! tool's byte stream (records straddle blocks), read by the stream reader
//! the filesystem uses too (`dirstream`). Memory is a block or two and one
//! record's header and name, whatever the directory's size; holes cost
//! nothing.

use alloc::boxed::Box;

use super::blockmap::{blocks_for, MapCursor};
use super::context::Checker;
use crate::device::BlockDevice;
pub(super) use crate::dirstream::EntryRef;
use crate::dirstream::{self, DirBlocks};
use crate::error::Result;
use crate::format::dirent::{BlockEnd, BlockWalk};
use crate::format::inode::DiskInode;
use crate::format::{Block, BLOCK_SIZE};

const BLOCK: u64 = BLOCK_SIZE as u64;
/// Estimated bytes a name costs in the duplicate-name set beyond itself.
const NAME_OVERHEAD: u64 = 48;

/// Bytes of logical block `logical` that belong to a directory of `size`.
pub(super) fn block_limit(size: u32, logical: u64) -> usize {
    (size as u64).saturating_sub(logical * BLOCK).min(BLOCK) as usize
}

pub(super) type BlockVisitor<'v, 'a, D> =
    dyn FnMut(&mut Checker<'a, D>, u64, &mut Block, usize) -> Result<bool> + 'v;

/// Calls `visit(logical, block, limit)` for each mapped block below the
/// directory's size, in order, and writes the block back when `visit`
/// returns true.
pub(super) fn for_each_block<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    inode: &DiskInode,
    visit: &mut BlockVisitor<'_, 'a, D>,
) -> Result<()> {
    let count = blocks_for(inode.size);
    let mut cursor = MapCursor::new(inode);
    let mut block = Box::new([0u8; BLOCK_SIZE]);
    let mut from = 0;
    while let Some((logical, physical)) = cursor.next_mapped(ck, from, count)? {
        ck.read_block(physical, &mut block)?;
        if visit(ck, logical, &mut block, block_limit(inode.size, logical))? {
            ck.write_block(physical, &block)?;
        }
        from = logical + 1;
    }
    Ok(())
}

/// A directory's blocks read from the device for the stream reader;
/// pointers the checker cannot trust read as holes.
struct CheckerDirBlocks<'c, 'a, D> {
    ck: &'c mut Checker<'a, D>,
    cursor: MapCursor,
}

impl<D: BlockDevice> DirBlocks for CheckerDirBlocks<'_, '_, D> {
    fn read_logical(&mut self, logical: u64, out: &mut Block) -> Result<bool> {
        match self.cursor.lookup(self.ck, logical)? {
            Some(physical) => {
                self.ck.read_block(physical, out)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn next_mapped(&mut self, from: u64, end: u64) -> Result<Option<u64>> {
        Ok(self.cursor.next_mapped(self.ck, from, end)?.map(|(logical, _)| logical))
    }
}

pub(super) type EntryVisitor<'v, 'a, D> = dyn FnMut(&mut Checker<'a, D>, &EntryRef<'_>) -> Result<()> + 'v;

/// Reads a directory as one stream of records up to its size, the way the
/// filesystem reads the older tool's layout (`dirstream`), calling `visit`
/// for every record (live or free). Returns whether the stream parsed
/// exactly up to the size.
pub(super) fn walk_stream<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    inode: &DiskInode,
    visit: &mut EntryVisitor<'_, 'a, D>,
) -> Result<bool> {
    let mut blocks = CheckerDirBlocks { ck, cursor: MapCursor::new(inode) };
    dirstream::walk_stream(&mut blocks, inode.size as u64, &mut |blocks, record| {
        visit(blocks.ck, record)?;
        Ok(true)
    })
}

/// How a directory's records are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Every block parses under the block rule.
    Blocks,
    /// Some block does not, but the whole parses as the older tool's
    /// stream.
    Legacy,
    /// Neither: some blocks are damaged.
    Damaged,
}

pub(super) struct Survey {
    pub layout: Layout,
    /// What the live names would cost in a duplicate-name set.
    pub name_cost: u64,
}

fn name_cost(entry_name: &[u8]) -> u64 {
    entry_name.len() as u64 + NAME_OVERHEAD
}

/// Reads a directory once to learn its layout and the size of its names.
pub(super) fn survey<D: BlockDevice>(ck: &mut Checker<'_, D>, inode: &DiskInode) -> Result<Survey> {
    let mut clean = true;
    let mut cost = 0;
    for_each_block(ck, inode, &mut |_, _, block, limit| {
        let mut walk = BlockWalk::new(block, limit);
        for record in walk.by_ref() {
            if record.is_live() {
                cost += name_cost(record.name);
            }
        }
        clean &= walk.end() == Some(BlockEnd::Clean);
        Ok(false)
    })?;
    if clean {
        return Ok(Survey { layout: Layout::Blocks, name_cost: cost });
    }
    if blocks_for(inode.size) > 1 {
        let mut stream_cost = 0;
        let parsed = walk_stream(ck, inode, &mut |_, entry| {
            if entry.is_live() {
                stream_cost += name_cost(entry.name);
            }
            Ok(())
        })?;
        if parsed {
            return Ok(Survey { layout: Layout::Legacy, name_cost: stream_cost });
        }
    }
    Ok(Survey { layout: Layout::Damaged, name_cost: cost })
}
