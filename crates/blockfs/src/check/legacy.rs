//! Rewriting a directory in the older host tool's stream layout into the
//! block rule. The new layout is built in free blocks and the inode is
//! switched to it in one write, so until that write the old directory is
//! intact (and a full image just leaves it as it is). Every live record is
//! kept as it was, even one the entry checks will object to: the rewrite
//! changes the layout, not the contents.

use alloc::boxed::Box;

use super::blockmap::{index_blocks, release_map, set_mapping, SIZE_LIMIT_BLOCKS};
use super::context::Checker;
use super::dirread::{walk_stream, EntryRef};
use super::dirwrite::{write_packed, Packer};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::dirent::entry_size;
use crate::format::inode::{DiskInode, DIRECT_BLOCKS};
use crate::format::{Block, BLOCK_SIZE};

/// Rewrites directory `ino`; returns false (changing nothing) when the
/// image has too little free space for the new copy.
pub(super) fn rewrite<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32) -> Result<bool> {
    let old = ck.read_inode(ino)?;
    let mut plan = Packer::default();
    walk_stream(ck, &old, &mut |_, entry| {
        if entry.is_live() {
            plan.place(entry_size(entry.name.len()));
        }
        Ok(())
    })?;
    let needed = plan.blocks() + index_blocks(plan.blocks());
    if plan.blocks() > SIZE_LIMIT_BLOCKS || needed > ck.free_data_blocks() as u64 {
        return Ok(false);
    }
    let mut new = DiskInode { direct: [0; DIRECT_BLOCKS], indirect: 0, double_indirect: 0, blocks: 0, ..old };
    let mut writer = Writer { packer: Packer::default(), block: Box::new([0u8; BLOCK_SIZE]), failed: false };
    walk_stream(ck, &old, &mut |ck, entry| writer.push(ck, &mut new, entry))?;
    writer.finish(ck, &mut new)?;
    if writer.failed {
        release_map(ck, &new)?;
        return Ok(false);
    }
    new.size = writer.packer.size() as u32;
    release_map(ck, &old)?;
    ck.write_inode(ino, &new)?;
    Ok(true)
}

/// Packs records into blocks and stores each full block in a fresh block.
struct Writer {
    packer: Packer,
    block: Box<Block>,
    /// Space ran out after all (the plan said it would not).
    failed: bool,
}

impl Writer {
    fn push<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        inode: &mut DiskInode,
        entry: &EntryRef<'_>,
    ) -> Result<()> {
        if !entry.is_live() || self.failed {
            return Ok(());
        }
        let previous = self.packer.logical;
        if self.packer.place(entry_size(entry.name.len())) {
            self.store(ck, inode, previous)?;
            self.block.fill(0);
        }
        let offset = self.packer.used - entry_size(entry.name.len());
        write_packed(&mut self.block, offset, entry.header.inode, entry.header.file_type, entry.name);
        Ok(())
    }

    fn finish<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, inode: &mut DiskInode) -> Result<()> {
        if self.packer.any && !self.failed {
            self.store(ck, inode, self.packer.logical)?;
        }
        Ok(())
    }

    fn store<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        inode: &mut DiskInode,
        logical: u64,
    ) -> Result<()> {
        let Some(physical) = ck.allocate_block() else {
            self.failed = true;
            return Ok(());
        };
        ck.write_block(physical, &self.block)?;
        if set_mapping(ck, inode, logical, physical)? {
            inode.blocks = inode.blocks.saturating_add(1);
        } else {
            ck.release_block(physical);
            self.failed = true;
        }
        Ok(())
    }
}
