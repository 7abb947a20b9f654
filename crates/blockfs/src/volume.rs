//! The mounted image's shared state: the device, the block cache, the
//! in-memory superblock and geometry. Every other module reaches blocks and
//! inodes through here, so bounds checks happen in one place.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};

use crate::cache::{BlockCache, BlockKind};
use crate::device::BlockDevice;
use crate::dir::DirIndexes;
use crate::error::{Corruption, Error, Result};
use crate::format::extension::Extension;
use crate::format::geometry::Geometry;
use crate::format::inode::DiskInode;
use crate::format::superblock::Superblock;
use crate::format::Block;
use crate::journal::Journal;

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
    /// The metadata journal, when the image has one and is writable.
    pub journal: Option<Journal>,
    /// Inode number of the journal (hidden from every operation).
    pub journal_inode: Option<u32>,
    /// With a journal: blocks freed by the running transaction. Their
    /// bitmap bits clear at commit, so no block is reused (and overwritten
    /// with new data) while a crash could still bring back the old owner.
    pub pending_frees: BTreeSet<u32>,
    /// Read-only mount of an image with a committed but unreplayed
    /// transaction: its blocks, consulted before the device.
    pub overlay: BTreeMap<u32, Box<Block>>,
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
            journal: None,
            journal_inode: None,
            pending_frees: BTreeSet::new(),
            overlay: BTreeMap::new(),
        }
    }

    /// Installs the journal: from now on dirty metadata waits for commits.
    pub fn attach_journal(&mut self, journal: Journal) {
        self.cache.set_pin_metadata(true);
        self.journal = Some(journal);
    }

    fn check_block(&self, block: u32) -> Result<()> {
        if block < self.geometry.block_count {
            Ok(())
        } else {
            Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)))
        }
    }

    pub fn block(&mut self, block: u32) -> Result<&Block> {
        self.check_block(block)?;
        if let Some(replayed) = self.overlay.get(&block) {
            return Ok(replayed);
        }
        Ok(self.cache.read(&mut self.device, block)?)
    }

    /// Whether a block's current contents are in memory (and so must be
    /// read from there, not from the device).
    pub fn is_cached(&self, block: u32) -> bool {
        self.cache.is_cached(block) || self.overlay.contains_key(&block)
    }

    /// Reads consecutive blocks straight from the device, bypassing the
    /// cache; the caller has checked none of them is cached.
    pub fn read_uncached(&mut self, first: u32, buf: &mut [u8]) -> Result<()> {
        let count = (buf.len() / crate::format::BLOCK_SIZE) as u32;
        self.check_block(first.saturating_add(count.saturating_sub(1)))?;
        Ok(self.device.read_blocks(first, buf)?)
    }

    fn writable(&self, block: u32) -> Result<()> {
        self.check_block(block)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// A metadata block (bitmap, inode table, directory, indirect) to change.
    pub fn block_mut(&mut self, block: u32) -> Result<&mut Block> {
        self.writable(block)?;
        Ok(self.cache.modify(&mut self.device, block, BlockKind::Metadata)?)
    }

    /// A metadata block the caller fills whole: zeroed, not read first.
    pub fn block_overwrite(&mut self, block: u32) -> Result<&mut Block> {
        self.writable(block)?;
        Ok(self.cache.overwrite(&mut self.device, block, BlockKind::Metadata)?)
    }

    /// A file-data block to change (not journaled; ordered before commit).
    pub fn data_block_mut(&mut self, block: u32) -> Result<&mut Block> {
        self.writable(block)?;
        Ok(self.cache.modify(&mut self.device, block, BlockKind::Data)?)
    }

    /// A file-data block the caller fills whole: zeroed, not read first.
    pub fn data_block_overwrite(&mut self, block: u32) -> Result<&mut Block> {
        self.writable(block)?;
        Ok(self.cache.overwrite(&mut self.device, block, BlockKind::Data)?)
    }

    /// Inode numbers that have a slot in the table.
    pub fn check_inode(&self, ino: u32) -> Result<()> {
        if ino < self.geometry.usable_inodes() {
            Ok(())
        } else {
            Err(Error::corrupt(Corruption::InodeOutOfRange(ino), Some(ino), None))
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

    /// Makes every change durable: with a journal, as one transaction
    /// (see `journal`); without, by writing every dirty block and flushing.
    /// Writes only dirty blocks, plus block 0 when anything changed.
    /// Returns the number of home blocks written.
    pub fn commit(&mut self, now: u32) -> Result<usize> {
        if self.read_only {
            return Ok(0);
        }
        self.release_pending_frees()?;
        if self.superblock_dirty || self.cache.dirty_blocks() > 0 {
            self.superblock.write_time = now as u64;
            self.store_superblock()?;
        }
        let Some(journal) = self.journal.as_mut() else {
            let written = self.cache.write_back(&mut self.device)?;
            self.device.flush()?;
            return Ok(written);
        };
        let data = self.cache.write_back_data(&mut self.device)?;
        let metadata = self.cache.dirty_metadata();
        if metadata.is_empty() {
            if data > 0 {
                self.device.flush()?;
            }
            return Ok(data);
        }
        self.device.flush()?;
        // A transaction too large for the journal (only a pathological
        // operation makes one) goes home unlogged, as on a plain image.
        let logged = metadata.len() <= journal.capacity();
        if logged {
            let cache = &self.cache;
            journal.write_transaction(&mut self.device, &metadata, |block| cache.peek(block).copied())?;
            self.device.flush()?;
        }
        let written = self.cache.write_back(&mut self.device)?;
        self.device.flush()?;
        if logged {
            // Durable with the next commit's first flush, before the
            // journal is written again.
            journal.mark_checkpointed(&mut self.device)?;
        }
        self.cache.shrink_to_budget();
        Ok(data + written)
    }

    /// Whether the running transaction should commit at the next operation
    /// boundary: the journal or the cache budget is half used by it.
    pub fn commit_due(&self) -> bool {
        match &self.journal {
            Some(journal) => {
                let dirty = self.cache.dirty_metadata_blocks() + self.pending_frees.len().min(1);
                dirty * 2 >= journal.capacity()
                    || self.cache.overflow() > 0
                    || dirty * 2 >= self.cache.capacity()
            }
            None => false,
        }
    }
}
