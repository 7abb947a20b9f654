//! Step 1, continued: the new state's metadata blocks, built in memory
//! from the old image and the layout decisions.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::image::{read_boxed, walk_map, OldImage};
use super::plan::Layout;
use super::ResizeError;
use crate::bmap::{self, Action, Level, MapWalk, Pointer};
use crate::device::BlockDevice;
use crate::format::dirent::{BlockEnd, BlockWalk};
use crate::format::geometry::{Geometry, BITS_PER_BITMAP_BLOCK};
use crate::format::inode::{DiskInode, FileType, DIRECT_BLOCKS, INODES_PER_BLOCK};
use crate::format::{put_u32, Block, BLOCK_SIZE, POINTERS_PER_BLOCK};

/// The builder's side of the shared walk (`bmap::walk_map`): every
/// pointer goes to its block's new home; an indirect block in which a
/// pointer changed, or which moves, is queued at its new home.
struct RemapWalk<'b, 'a, D> {
    builder: &'b mut Builder<'a, D>,
}

impl<D: BlockDevice> MapWalk for RemapWalk<'_, '_, D> {
    type Error = ResizeError;

    fn visit(&mut self, pointer: Pointer) -> Result<Action, ResizeError> {
        Ok(match pointer.level {
            Level::Data => Action::Replace(self.builder.remap(pointer.block)),
            // Moved once its own pointers are remapped (`leave_indirect`).
            _ => Action::Keep,
        })
    }

    fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>, ResizeError> {
        read_boxed(self.builder.device, pointer.block).map(Some)
    }

    fn leave_indirect(
        &mut self,
        pointer: Pointer,
        contents: Box<Block>,
        changed: bool,
    ) -> Result<Action, ResizeError> {
        let home = self.builder.remap(pointer.block);
        if changed || home != pointer.block {
            self.builder.targets.insert(home, contents);
        }
        Ok(Action::Replace(home))
    }
}

pub(super) struct Built {
    /// Changed blocks by home, block 0 aside.
    pub targets: BTreeMap<u32, Box<Block>>,
    pub block0: Block,
}

struct Builder<'a, D> {
    device: &'a mut D,
    layout: &'a Layout,
    targets: BTreeMap<u32, Box<Block>>,
}

impl<D: BlockDevice> Builder<'_, D> {
    fn remap(&self, block: u32) -> u32 {
        self.layout.moves.get(&block).copied().unwrap_or(block)
    }

    /// Queues the indirect blocks of `inode` whose pointers change or
    /// that move, each at its new home. (The inode's own pointers are
    /// remapped with the inode table.)
    fn remap_map_blocks(&mut self, inode: &DiskInode) -> Result<(), ResizeError> {
        bmap::walk_map(&mut RemapWalk { builder: self }, &mut { *inode })
    }

    /// Rewrites the entries of directory `ino` that name renumbered inodes.
    fn renumber_entries(&mut self, old: &Geometry, ino: u32, inode: &DiskInode) -> Result<(), ResizeError> {
        let size = inode.size as u64;
        let mut blocks = Vec::new();
        walk_map(self.device, old, ino, inode, &mut |pointer| {
            if pointer.level == Level::Data && pointer.logical * (BLOCK_SIZE as u64) < size {
                blocks.push((pointer.logical, pointer.block));
            }
            Ok(())
        })?;
        for (logical, block) in blocks {
            let mut content = read_boxed(self.device, block)?;
            let limit = (size - logical * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
            let mut patches = Vec::new();
            let mut walk = BlockWalk::new(&content, limit);
            for entry in walk.by_ref() {
                if let Some(&to) = self.layout.renumber.get(&entry.header.inode) {
                    patches.push((entry.offset, to));
                }
            }
            if walk.end() != Some(BlockEnd::Clean) {
                return Err(ResizeError::LegacyDirectory { inode: ino });
            }
            if patches.is_empty() {
                continue;
            }
            for (offset, to) in patches {
                put_u32(&mut content[..], offset, to);
            }
            let home = self.remap(block);
            self.targets.insert(home, content);
        }
        Ok(())
    }

    /// Queues `content` for `home` unless the device already holds it there.
    fn put_if_changed(&mut self, home: u32, content: Box<Block>) -> Result<(), ResizeError> {
        if home < self.device.block_count() {
            let mut current = [0u8; BLOCK_SIZE];
            self.device.read_block(home, &mut current)?;
            if current == *content {
                return Ok(());
            }
        }
        self.targets.insert(home, content);
        Ok(())
    }
}

/// The journal's hidden inode for a run `first .. first + length`, its
/// pointers laid out as `mkfs` lays them (map blocks right after the run),
/// with the map blocks handed to `write`. Fields other than the block map
/// are taken from `old`.
fn journal_inode(old: &DiskInode, first: u32, length: u32, write: &mut dyn FnMut(u32, Block)) -> DiskInode {
    let mut inode = DiskInode {
        direct: [0; DIRECT_BLOCKS],
        indirect: 0,
        double_indirect: 0,
        triple_indirect: 0,
        size: length.saturating_mul(BLOCK_SIZE as u32),
        ..*old
    };
    let mut next = first + length;
    let mut run = first..first + length;
    for slot in inode.direct.iter_mut() {
        *slot = run.next().unwrap_or(0);
    }
    let mut write_pointers = |pointers: &mut dyn Iterator<Item = u32>| -> u32 {
        let mut block = [0u8; BLOCK_SIZE];
        for (index, pointer) in pointers.enumerate() {
            put_u32(&mut block, index * 4, pointer);
        }
        let at = next;
        next += 1;
        write(at, block);
        at
    };
    if !run.is_empty() {
        inode.indirect = write_pointers(&mut run.by_ref().take(POINTERS_PER_BLOCK));
    }
    if !run.is_empty() {
        let mut middles = Vec::new();
        while !run.is_empty() {
            middles.push(write_pointers(&mut run.by_ref().take(POINTERS_PER_BLOCK)));
        }
        inode.double_indirect = write_pointers(&mut middles.into_iter());
    }
    inode.blocks = next - first;
    inode
}

pub(super) fn build<D: BlockDevice>(
    device: &mut D,
    image: &OldImage,
    layout: &Layout,
) -> Result<Built, ResizeError> {
    let old = layout.old;
    let new = layout.new;
    let journal_ino = image.journal_inode();
    let mut builder = Builder { device, layout, targets: BTreeMap::new() };

    // Block maps: indirect blocks whose pointers change or that move.
    for &ino in &layout.touched {
        builder.remap_map_blocks(&image.inodes[ino as usize])?;
    }
    // Directory entries naming renumbered inodes (`..` included).
    if !layout.renumber.is_empty() {
        for (ino, inode) in image.inodes.iter().enumerate() {
            if !inode.is_free() && inode.file_type() == Some(FileType::Directory) {
                builder.renumber_entries(&old, ino as u32, inode)?;
            }
        }
    }

    // The inode table, slot by slot in the new numbering.
    let usable = new.usable_inodes() as usize;
    let mut inodes: Vec<DiskInode> = vec![DiskInode::default(); usable];
    let kept = usable.min(image.inodes.len());
    inodes[..kept].copy_from_slice(&image.inodes[..kept]);
    for (&from, &to) in &layout.renumber {
        inodes[to as usize] = image.inodes[from as usize];
    }
    let new_journal_ino = journal_ino.map(|ino| layout.renumber.get(&ino).copied().unwrap_or(ino));
    for (ino, inode) in inodes.iter_mut().enumerate() {
        if inode.is_free() || !inode.file_type().is_some_and(FileType::has_data_blocks) {
            continue;
        }
        if layout.new_journal.is_some() && Some(ino as u32) == new_journal_ino {
            continue;
        }
        for pointer in inode.direct.iter_mut().chain([&mut inode.indirect, &mut inode.double_indirect]) {
            if *pointer != 0 {
                *pointer = layout.moves.get(pointer).copied().unwrap_or(*pointer);
            }
        }
    }
    if let (Some((first, length, _)), Some(ino)) = (layout.new_journal, new_journal_ino) {
        let mut maps = Vec::new();
        inodes[ino as usize] = journal_inode(&inodes[ino as usize], first, length, &mut |at, block| {
            maps.push((at, block));
        });
        for (at, block) in maps {
            builder.targets.insert(at, Box::new(block));
        }
    }
    for index in 0..new.inode_table_blocks {
        let mut block = Box::new([0u8; BLOCK_SIZE]);
        let start = (index * INODES_PER_BLOCK) as usize;
        for (slot, inode) in inodes.iter().skip(start).take(INODES_PER_BLOCK as usize).enumerate() {
            inode.encode_slot(&mut block, slot);
        }
        builder.put_if_changed(new.first_inode_table_block() + index, block)?;
    }

    // The bitmap: metadata, every kept block at its new home, the journal.
    let mut bitmap = vec![0u8; new.bitmap_blocks as usize * BLOCK_SIZE];
    let mut set = |block: u32| bitmap[block as usize / 8] |= 1 << (block % 8);
    for block in 0..new.first_data_block() {
        set(block);
    }
    let mut used_data = 0u32;
    for block in layout.claimed.iter() {
        if layout.old_journal.as_ref().is_some_and(|journal| journal.contains(block)) {
            continue;
        }
        set(layout.moves.get(&block).copied().unwrap_or(block));
        used_data += 1;
    }
    if let Some((first, _, span)) = layout.new_journal {
        for block in first..first + span {
            set(block);
        }
        used_data += span;
    }
    for (index, chunk) in bitmap.chunks_exact(BLOCK_SIZE).enumerate() {
        let block: Box<Block> = Box::new(chunk.try_into().expect("whole blocks"));
        builder.put_if_changed(new.first_bitmap_block() + index as u32, block)?;
    }
    debug_assert!(new.bitmap_blocks * BITS_PER_BITMAP_BLOCK >= new.block_count);

    // Block 0: the new counts, the journal's new place.
    let mut superblock = image.superblock;
    superblock.block_count = new.block_count;
    superblock.inode_count = new.inode_count;
    superblock.first_data_block = new.first_data_block();
    superblock.free_blocks = new.data_blocks().saturating_sub(used_data);
    superblock.free_inodes = new.usable_inodes() - layout.used_inodes;
    let mut block0 = image.block0;
    superblock.encode_block(&mut block0);
    if let Some(mut extension) = image.extension {
        if let Some(ino) = new_journal_ino {
            extension.journal_inode = ino;
        }
        if let Some((first, _, _)) = layout.new_journal {
            extension.journal_first_block = first;
        }
        extension.encode_block(&mut block0);
    }
    Ok(Built { targets: builder.targets, block0 })
}
