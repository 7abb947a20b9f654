//! The mounted image's shared state: the device, the block cache, the
//! in-memory superblock and geometry. Every other module reaches blocks and
//! inodes through here, so bounds checks happen in one place.

use alloc::collections::BTreeSet;

use crate::cache::BlockCache;
use crate::device::BlockDevice;
use crate::dir::DirIndexes;
use crate::error::{Corruption, Error, Result};
use crate::format::extension::Extension;
use crate::format::geometry::Geometry;
use crate::format::inode::DiskInode;
use crate::format::superblock::Superblock;
use crate::format::Block;

pub(crate) struct Volume<D> {
    pub device: D,
    pub cache: BlockCache,
    pub superblock: Superblock,
    /// The extension record, when block 0 carries a valid one.
    pub extension: Option<Extension>,
    pub geometry: Geometry,
    pub read_only: bool,
    /// The superblock changed since block 0 was last written.
    pub superblock_dirty: bool,
    /// Where the next block search starts (see `alloc`).
    pub block_hint: u32,
    /// Where the next inode search starts.
    pub inode_hint: u32,
    /// Inodes with no links that must not be reused yet (open, unlinked).
    pub orphans: BTreeSet<u32>,
    /// Name indexes of large directories.
    pub dir_indexes: DirIndexes,
}

impl<D: BlockDevice> Volume<D> {
    pub fn new(
        device: D,
        cache: BlockCache,
        superblock: Superblock,
        extension: Option<Extension>,
        geometry: Geometry,
        read_only: bool,
        dir_indexes: DirIndexes,
    ) -> Self {
        Volume {
            device,
            cache,
            superblock,
            extension,
            geometry,
            read_only,
            superblock_dirty: false,
            block_hint: geometry.first_data_block(),
            inode_hint: 1,
            orphans: BTreeSet::new(),
            dir_indexes,
        }
    }

    fn check_block(&self, block: u32) -> Result<()> {
        if block < self.geometry.block_count {
            Ok(())
        } else {
            Err(Error::corrupt(
                Corruption::BlockOutOfRange(block),
                None,
                Some(block),
            ))
        }
    }

    pub fn block(&mut self, block: u32) -> Result<&Block> {
        self.check_block(block)?;
        Ok(self.cache.read(&mut self.device, block)?)
    }

    pub fn block_mut(&mut self, block: u32) -> Result<&mut Block> {
        self.check_block(block)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(self.cache.modify(&mut self.device, block)?)
    }

    /// A block the caller overwrites whole: zero-filled, not read first.
    pub fn block_overwrite(&mut self, block: u32) -> Result<&mut Block> {
        self.check_block(block)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(self.cache.overwrite(&mut self.device, block)?)
    }

    /// Inode numbers that have a slot in the table.
    pub fn check_inode(&self, ino: u32) -> Result<()> {
        if ino < self.geometry.usable_inodes() {
            Ok(())
        } else {
            Err(Error::corrupt(
                Corruption::InodeOutOfRange(ino),
                Some(ino),
                None,
            ))
        }
    }

    pub fn read_inode(&mut self, ino: u32) -> Result<DiskInode> {
        self.check_inode(ino)?;
        let (block, slot) = self.geometry.inode_location(ino);
        Ok(DiskInode::decode_slot(self.block(block)?, slot))
    }

    pub fn write_inode(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        self.check_inode(ino)?;
        let (block, slot) = self.geometry.inode_location(ino);
        inode.encode_slot(self.block_mut(block)?, slot);
        Ok(())
    }

    /// Puts the in-memory superblock (and extension record) into block 0.
    pub fn store_superblock(&mut self) -> Result<()> {
        let superblock = self.superblock;
        let extension = self.extension;
        let block = self.block_mut(0)?;
        superblock.encode_block(block);
        if let Some(extension) = extension {
            extension.encode_block(block);
        }
        self.superblock_dirty = false;
        Ok(())
    }

    /// Writes back every change and makes it durable. Writes only dirty
    /// blocks, plus block 0 when the superblock changed.
    pub fn sync(&mut self, now: u32) -> Result<usize> {
        if self.read_only {
            return Ok(0);
        }
        if self.superblock_dirty || self.cache.dirty_blocks() > 0 {
            self.superblock.write_time = now as u64;
            self.store_superblock()?;
        }
        let written = self.cache.write_back(&mut self.device)?;
        self.device.flush()?;
        Ok(written)
    }
}
