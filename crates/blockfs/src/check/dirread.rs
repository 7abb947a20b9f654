//! Reading directories straight from the device, in either layout: the
//! block rule (records never cross a 4 KiB boundary) or the older host
//! tool's byte stream (records straddle blocks). Memory is a block or two
//! and one record's header and name, whatever the directory's size; holes
//! cost nothing.

use alloc::boxed::Box;

use super::blockmap::{blocks_for, MapCursor};
use super::context::Checker;
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::dirent::{
    is_dot_or_dotdot, BlockEnd, BlockWalk, DirentHeader, DIRENT_HEADER_SIZE, MAX_NAME_LEN,
};
use crate::format::inode::DiskInode;
use crate::format::{Block, BLOCK_SIZE};

const BLOCK: u64 = BLOCK_SIZE as u64;
/// Estimated bytes a name costs in the duplicate-name set beyond itself.
const NAME_OVERHEAD: u64 = 48;

/// A record found in a directory, in either layout.
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryRef<'n> {
    /// Byte position of the record in the directory.
    pub position: u64,
    pub header: DirentHeader,
    pub name: &'n [u8],
}

impl EntryRef<'_> {
    /// Free records hold inode 0, except `.` and `..` (the root is 0).
    pub fn is_live(&self) -> bool {
        self.header.inode != 0 || is_dot_or_dotdot(self.name)
    }
}

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

/// The two most recent blocks of a stream, so a header or name crossing a
/// boundary can be read (block `n` lives in slot `n % 2`).
struct Window {
    cursor: MapCursor,
    slots: [(u64, Box<Block>); 2],
}

impl Window {
    fn new(inode: &DiskInode) -> Self {
        Window {
            cursor: MapCursor::new(inode),
            slots: [(u64::MAX, Box::new([0u8; BLOCK_SIZE])), (u64::MAX, Box::new([0u8; BLOCK_SIZE]))],
        }
    }

    fn block<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, logical: u64) -> Result<&Block> {
        let slot = (logical % 2) as usize;
        if self.slots[slot].0 != logical {
            match self.cursor.lookup(ck, logical)? {
                Some(physical) => ck.read_block(physical, &mut self.slots[slot].1)?,
                None => self.slots[slot].1.fill(0),
            }
            self.slots[slot].0 = logical;
        }
        Ok(&self.slots[slot].1)
    }

    /// Copies the bytes at `position` (at most a header and a name, so
    /// they span two blocks at most).
    fn copy<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, position: u64, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let at = position + done as u64;
            let within = (at % BLOCK) as usize;
            let chunk = (BLOCK_SIZE - within).min(out.len() - done);
            let block = self.block(ck, at / BLOCK)?;
            out[done..done + chunk].copy_from_slice(&block[within..within + chunk]);
            done += chunk;
        }
        Ok(())
    }

    /// Where the stream resumes after the padding at `position`, if the
    /// bytes from there to the next block boundary are zero (the older
    /// kernel driver started fresh blocks this way). A hole is all zeros,
    /// so a run of holes is skipped at once.
    fn skip_padding<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        position: u64,
        size: u64,
    ) -> Result<Option<u64>> {
        let logical = position / BLOCK;
        let boundary = (logical + 1) * BLOCK;
        let count = size.div_ceil(BLOCK);
        if position % BLOCK == 0 && self.cursor.lookup(ck, logical)?.is_none() {
            let next = self.cursor.next_mapped(ck, logical + 1, count)?;
            // With no block left, stop on the last boundary before the end
            // so the end-of-stream check sees what the older reader sees.
            return Ok(Some(match next {
                Some((next, _)) => next * BLOCK,
                None => boundary.max((count - 1) * BLOCK),
            }));
        }
        let start = (position % BLOCK) as usize;
        let end = (boundary.min(size) - logical * BLOCK) as usize;
        let block = self.block(ck, logical)?;
        Ok(block[start..end].iter().all(|&b| b == 0).then_some(boundary))
    }
}

pub(super) type EntryVisitor<'v, 'a, D> = dyn FnMut(&mut Checker<'a, D>, &EntryRef<'_>) -> Result<()> + 'v;

/// Reads a directory as one stream of records up to `size`, the way the
/// library's legacy reader does, calling `visit` for every record (live or
/// free). Returns whether the stream parsed exactly up to `size`.
pub(super) fn walk_stream<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    inode: &DiskInode,
    visit: &mut EntryVisitor<'_, 'a, D>,
) -> Result<bool> {
    let size = inode.size as u64;
    let mut window = Window::new(inode);
    let mut head = [0u8; DIRENT_HEADER_SIZE];
    let mut name = [0u8; MAX_NAME_LEN];
    let mut position = 0u64;
    while position < size {
        if size - position < DIRENT_HEADER_SIZE as u64 {
            return Ok(false);
        }
        window.copy(ck, position, &mut head)?;
        let header = DirentHeader::decode(&head);
        if !header.rec_len_plausible() {
            match window.skip_padding(ck, position, size)? {
                Some(next) => {
                    position = next;
                    continue;
                }
                None => return Ok(false),
            }
        }
        let name_len = header.name_len as usize;
        if position + header.rec_len as u64 > size || DIRENT_HEADER_SIZE + name_len > header.rec_len as usize
        {
            return Ok(false);
        }
        window.copy(ck, position + DIRENT_HEADER_SIZE as u64, &mut name[..name_len])?;
        let entry = EntryRef { position, header, name: &name[..name_len] };
        visit(ck, &entry)?;
        position += header.rec_len as u64;
    }
    Ok(true)
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
