//! Creating a filesystem: metadata, the root directory, and (by default)
//! the journal, laid out as
//! `[block 0][bitmap][inode table][root dir][journal run][journal map]`.

use alloc::vec;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::dirent::{write_entry, DirentHeader};
use crate::format::extension::{Extension, FEATURE_JOURNAL};
use crate::format::geometry::{indirect_blocks, Geometry, BITS_PER_BITMAP_BLOCK, ROOT_INODE};
use crate::format::inode::{
    DiskInode, FileType, DIRECT_BLOCKS, INODE_SIZE, PERMISSION_BITS, SYSTEM_INODE_FLAG,
};
use crate::format::superblock::{
    Superblock, BLOCKS_PER_GROUP, DEFAULT_MAX_MOUNT_COUNT, INODES_PER_GROUP, MAGIC, STATE_CLEAN,
};
use crate::format::{put_u32, Block, BLOCK_SIZE, POINTERS_PER_BLOCK};
use crate::journal::{journal_size_for, Journal};

use super::FormatOptions;

/// The journal lives in the first inode after the root.
pub const JOURNAL_INODE: u32 = 1;

/// Creates a filesystem on `device` and returns the device.
pub fn format<D: BlockDevice>(mut device: D, options: &FormatOptions) -> Result<D> {
    let inode_count =
        options.inode_count.unwrap_or_else(|| Geometry::default_inode_count(options.block_count, 0));
    let geometry = Geometry::new(options.block_count, inode_count).map_err(Error::BadGeometry)?;
    if device.block_count() < options.block_count {
        return Err(Error::NoSpace);
    }
    let root_block = geometry.first_data_block();
    let journal_blocks = if options.journal && options.extension {
        journal_size_for(options.block_count).filter(|_| geometry.usable_inodes() > JOURNAL_INODE)
    } else {
        None
    };

    zero_inode_table(&mut device, &geometry)?;
    let mut table_block = [0u8; BLOCK_SIZE];
    root_inode(options, root_block).encode_slot(&mut table_block, ROOT_INODE as usize);
    let mut next_free = root_block + 1;
    let mut extension = Extension::new(options.uuid, &options.label, options.time as u64);
    if let Some(length) = journal_blocks {
        let first = next_free;
        let mut write = |block: u32, data: &Block| Ok(device.write_block(block, data)?);
        let (inode, map_end) = journal_inode(first, length, options.time, &mut write)?;
        inode.encode_slot(&mut table_block, JOURNAL_INODE as usize);
        Journal::create(&device, first, length)?;
        extension.compat_features |= FEATURE_JOURNAL;
        extension.journal_inode = JOURNAL_INODE;
        extension.journal_blocks = length;
        extension.journal_first_block = first;
        next_free = map_end;
    }
    device.write_block(geometry.first_inode_table_block(), &table_block)?;
    write_bitmap(&mut device, &geometry, next_free)?;
    device.write_block(root_block, &root_directory_block())?;

    let inodes_used = 1 + journal_blocks.is_some() as u32;
    let superblock = Superblock {
        magic: MAGIC,
        block_count: options.block_count,
        inode_count,
        free_blocks: options.block_count - next_free,
        free_inodes: geometry.usable_inodes() - inodes_used,
        first_data_block: geometry.first_data_block(),
        block_size: BLOCK_SIZE as u32,
        inode_size: INODE_SIZE as u16,
        blocks_per_group: BLOCKS_PER_GROUP,
        inodes_per_group: INODES_PER_GROUP,
        mount_time: 0,
        write_time: options.time as u64,
        mount_count: 0,
        max_mount_count: DEFAULT_MAX_MOUNT_COUNT,
        state: STATE_CLEAN,
        errors: 0,
    };
    let mut block0 = [0u8; BLOCK_SIZE];
    superblock.encode_block(&mut block0);
    if options.extension {
        extension.encode_block(&mut block0);
    }
    device.write_block(0, &block0)?;
    device.flush()?;
    Ok(device)
}

fn zero_inode_table<D: BlockDevice>(device: &mut D, geometry: &Geometry) -> Result<()> {
    const RUN: u32 = 64;
    let zeros = vec![0u8; RUN as usize * BLOCK_SIZE];
    let end = geometry.first_data_block();
    let mut block = geometry.first_inode_table_block();
    while block < end {
        let count = RUN.min(end - block);
        device.write_blocks(block, &zeros[..count as usize * BLOCK_SIZE])?;
        block += count;
    }
    Ok(())
}

fn root_inode(options: &FormatOptions, root_block: u32) -> DiskInode {
    let mut direct = [0; DIRECT_BLOCKS];
    direct[0] = root_block;
    DiskInode {
        mode: FileType::Directory.mode_bits() | (options.root_permissions & PERMISSION_BITS),
        uid: options.root_uid,
        gid: options.root_gid,
        size: 24,
        atime: options.time,
        ctime: options.time,
        mtime: options.time,
        links_count: 2,
        blocks: 1,
        direct,
        ..DiskInode::default()
    }
}

/// "." and "..", both naming the root, inode 0.
fn root_directory_block() -> Block {
    let mut block = [0u8; BLOCK_SIZE];
    for (offset, name) in [(0usize, &b"."[..]), (12, b"..")] {
        let header = DirentHeader {
            inode: ROOT_INODE,
            rec_len: 12,
            name_len: name.len() as u8,
            file_type: FileType::Directory.dirent_code(),
        };
        write_entry(&mut block, offset, header, name);
    }
    block
}

/// Marks blocks `0 .. used_end` used (metadata, root directory, journal).
fn write_bitmap<D: BlockDevice>(device: &mut D, geometry: &Geometry, used_end: u32) -> Result<()> {
    for bitmap_index in 0..geometry.bitmap_blocks {
        let mut bitmap = [0u8; BLOCK_SIZE];
        let base = bitmap_index * BITS_PER_BITMAP_BLOCK;
        let used_here = used_end.saturating_sub(base).min(BITS_PER_BITMAP_BLOCK);
        let full_bytes = (used_here / 8) as usize;
        bitmap[..full_bytes].fill(0xff);
        if used_here % 8 != 0 {
            bitmap[full_bytes] = (1u8 << (used_here % 8)) - 1;
        }
        device.write_block(geometry.first_bitmap_block() + bitmap_index, &bitmap)?;
    }
    Ok(())
}

/// Indirect blocks that map a journal of `length` blocks.
pub(crate) fn journal_map_blocks(length: u32) -> u32 {
    indirect_blocks(length as u64) as u32
}

/// The journal's hidden inode: its run `first .. first + length` mapped
/// through the usual direct/indirect pointers, with the indirect blocks
/// placed right after the run and handed to `write`. Returns the inode and
/// the first block past everything it uses.
pub(crate) fn journal_inode(
    first: u32,
    length: u32,
    time: u32,
    write: &mut dyn FnMut(u32, &Block) -> Result<()>,
) -> Result<(DiskInode, u32)> {
    let run: Vec<u32> = (first..first + length).collect();
    let mut next = first + length;
    let mut inode = DiskInode {
        mode: FileType::Regular.mode_bits() | 0o600,
        size: length * BLOCK_SIZE as u32,
        atime: time,
        ctime: time,
        mtime: time,
        links_count: 1,
        flags: SYSTEM_INODE_FLAG,
        ..DiskInode::default()
    };
    let direct = run.len().min(DIRECT_BLOCKS);
    inode.direct[..direct].copy_from_slice(&run[..direct]);
    let mut rest = &run[direct..];
    let mut write_pointers = |pointers: &[u32]| -> Result<u32> {
        let mut block = [0u8; BLOCK_SIZE];
        for (index, pointer) in pointers.iter().enumerate() {
            put_u32(&mut block, index * 4, *pointer);
        }
        let at = next;
        next += 1;
        write(at, &block)?;
        Ok(at)
    };
    if !rest.is_empty() {
        let single = rest.len().min(POINTERS_PER_BLOCK);
        inode.indirect = write_pointers(&rest[..single])?;
        rest = &rest[single..];
    }
    if !rest.is_empty() {
        let middles: Vec<u32> =
            rest.chunks(POINTERS_PER_BLOCK).map(&mut write_pointers).collect::<Result<_>>()?;
        inode.double_indirect = write_pointers(&middles)?;
    }
    inode.blocks = next - first;
    debug_assert_eq!(next - first - length, journal_map_blocks(length));
    Ok((inode, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_block_counts() {
        assert_eq!(journal_map_blocks(12), 0);
        assert_eq!(journal_map_blocks(13), 1);
        assert_eq!(journal_map_blocks(1036), 1);
        assert_eq!(journal_map_blocks(1037), 3);
        assert_eq!(journal_map_blocks(8192), 1 + 1 + 7);
    }
}
