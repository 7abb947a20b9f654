//! The mounted image's shared state: the block store, the in-memory
//! superblock and geometry, allocation state, orphans and directory
//! indexes. Every other module reaches blocks and inodes through here.
//!
//! Operations are transactions (docs/DESIGN.md, "Transactions"): between
//! [`Volume::begin_operation`] and [`Volume::end_operation`] every change
//! is recorded — block prior states in the cache, in-memory state in an
//! [`OperationLog`] — so a failed operation rolls back to exactly where it
//! began, and only whole operations join the running journal transaction.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

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
use crate::store::BlockStore;

/// Blocks freed by the running transaction. Their bitmap bits clear at
/// commit, so no block is reused (and overwritten with new data) while a
/// crash could still bring back the old owner.
#[derive(Default)]
pub(crate) struct PendingFrees {
    blocks: BTreeSet<u32>,
    /// Pending frees per bitmap block: the bitmap blocks the commit will
    /// change, which count against the journal.
    per_bitmap_block: BTreeMap<u32, u32>,
}

impl PendingFrees {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn contains(&self, block: u32) -> bool {
        self.blocks.contains(&block)
    }

    fn insert(&mut self, block: u32, bitmap_block: u32) {
        if self.blocks.insert(block) {
            *self.per_bitmap_block.entry(bitmap_block).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, block: u32, bitmap_block: u32) {
        if self.blocks.remove(&block) {
            if let Some(count) = self.per_bitmap_block.get_mut(&bitmap_block) {
                *count -= 1;
                if *count == 0 {
                    self.per_bitmap_block.remove(&bitmap_block);
                }
            }
        }
    }

    fn take(&mut self) -> BTreeSet<u32> {
        self.per_bitmap_block.clear();
        core::mem::take(&mut self.blocks)
    }

    fn bitmap_blocks(&self) -> usize {
        self.per_bitmap_block.len()
    }
}

/// What an operation changed outside the block cache, to undo it.
struct OperationLog {
    superblock: Superblock,
    extension: Option<Extension>,
    superblock_dirty: bool,
    block_hint: u32,
    inode_hint: u32,
    /// Blocks the operation added to the pending frees.
    freed: Vec<u32>,
    /// Orphan-set changes: (inode, added).
    orphans: Vec<(u32, bool)>,
}

pub(crate) struct Volume<D> {
    store: BlockStore<D>,
    pub superblock: Superblock,
    /// The extension record, when block 0 carries a valid one.
    pub extension: Option<Extension>,
    pub geometry: Geometry,
    /// The superblock changed since block 0 was last written.
    pub superblock_dirty: bool,
    /// Where the next block search starts (see `allocator`).
    pub block_hint: u32,
    /// Where the next inode search starts.
    pub inode_hint: u32,
    /// Inodes on the orphan chain: no links but still referenced, or
    /// links but blocks past `size` still to free (see `orphan`).
    orphans: BTreeSet<u32>,
    /// Name indexes of large directories.
    pub dir_indexes: DirIndexes,
    /// The metadata journal, when the image has one and is writable.
    pub journal: Option<Journal>,
    /// Inode number of the journal (hidden from every operation).
    pub journal_inode: Option<u32>,
    pending_frees: PendingFrees,
    /// The operation in progress, when one is.
    operation: Option<OperationLog>,
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
            store: BlockStore::new(device, cache, geometry.block_count, read_only),
            superblock,
            extension,
            geometry,
            superblock_dirty: false,
            block_hint: geometry.first_data_block(),
            inode_hint: 1,
            orphans: BTreeSet::new(),
            dir_indexes,
            journal: None,
            journal_inode: None,
            pending_frees: PendingFrees::default(),
            operation: None,
        }
    }

    pub fn store(&self) -> &BlockStore<D> {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut BlockStore<D> {
        &mut self.store
    }

    pub fn into_device(self) -> D {
        self.store.into_device()
    }

    pub fn is_read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// Whether writes are allowed (a writable mount that has not aborted).
    pub fn check_writable(&self) -> Result<()> {
        self.store.check_writable()
    }

    /// Installs the journal: from now on dirty metadata waits for commits.
    pub fn attach_journal(&mut self, journal: Journal) {
        self.store.set_pin_metadata(true);
        self.journal = Some(journal);
    }

    // ---- operations as transactions -------------------------------------

    /// Starts recording an operation's changes.
    pub fn begin_operation(&mut self) {
        self.store.begin();
        self.dir_indexes.begin();
        self.operation = Some(OperationLog {
            superblock: self.superblock,
            extension: self.extension,
            superblock_dirty: self.superblock_dirty,
            block_hint: self.block_hint,
            inode_hint: self.inode_hint,
            freed: Vec::new(),
            orphans: Vec::new(),
        });
    }

    /// Ends the operation keeping its changes: they join the running
    /// journal transaction.
    pub fn end_operation(&mut self) {
        self.store.keep();
        self.dir_indexes.keep();
        self.operation = None;
    }

    /// Ends the operation undoing all it changed, in memory and in the
    /// cache: the volume is as the operation found it.
    pub fn rollback_operation(&mut self) {
        let blocks_changed = self.store.cache().operation_blocks() > 0;
        self.store.rollback();
        self.dir_indexes.rollback(blocks_changed);
        let Some(log) = self.operation.take() else { return };
        self.superblock = log.superblock;
        self.extension = log.extension;
        self.superblock_dirty = log.superblock_dirty;
        self.block_hint = log.block_hint;
        self.inode_hint = log.inode_hint;
        for block in log.freed.into_iter().rev() {
            let (bitmap_block, _) = self.geometry.bitmap_location(block);
            self.pending_frees.remove(block, bitmap_block);
        }
        for (ino, added) in log.orphans.into_iter().rev() {
            if added {
                self.orphans.remove(&ino);
            } else {
                self.orphans.insert(ino);
            }
        }
    }

    /// Metadata blocks the running transaction will log at commit: dirty
    /// metadata, the bitmap blocks its pending frees will clear, block 0.
    pub fn transaction_blocks(&self) -> usize {
        self.store.cache().dirty_metadata_blocks() + self.pending_frees.bitmap_blocks() + 1
    }

    /// Whether the running transaction still fits the journal whole (a
    /// plain image has no limit).
    pub fn fits_journal(&self) -> bool {
        self.journal.as_ref().is_none_or(|journal| self.transaction_blocks() <= journal.capacity())
    }

    /// Whether `credits` more blocks fit in the running transaction.
    pub fn has_room_for(&self, credits: usize) -> bool {
        self.journal.as_ref().is_none_or(|journal| self.transaction_blocks() + credits <= journal.capacity())
    }

    /// Whether the running transaction has anything to commit.
    pub fn has_changes(&self) -> bool {
        self.superblock_dirty || self.store.cache().dirty_blocks() > 0 || !self.pending_frees.is_empty()
    }

    pub fn pending_frees(&self) -> &PendingFrees {
        &self.pending_frees
    }

    /// Adds a block to the pending frees (undoably).
    pub(crate) fn defer_free(&mut self, block: u32) {
        let (bitmap_block, _) = self.geometry.bitmap_location(block);
        self.pending_frees.insert(block, bitmap_block);
        if let Some(log) = self.operation.as_mut() {
            log.freed.push(block);
        }
    }

    /// Takes the pending frees for the commit to release.
    pub(crate) fn take_pending_frees(&mut self) -> BTreeSet<u32> {
        self.pending_frees.take()
    }

    pub fn is_orphan(&self, ino: u32) -> bool {
        self.orphans.contains(&ino)
    }

    pub fn orphan_set(&self) -> &BTreeSet<u32> {
        &self.orphans
    }

    /// Notes `ino` in or out of the in-memory orphan set (undoably).
    pub(crate) fn set_orphan(&mut self, ino: u32, member: bool) {
        let changed = if member { self.orphans.insert(ino) } else { self.orphans.remove(&ino) };
        if let (true, Some(log)) = (changed, self.operation.as_mut()) {
            log.orphans.push((ino, member));
        }
    }

    // ---- blocks ----------------------------------------------------------

    pub fn block(&mut self, block: u32) -> Result<&Block> {
        self.store.block(block)
    }

    /// Whether a block's current contents are in memory.
    pub fn is_cached(&self, block: u32) -> bool {
        self.store.is_cached(block)
    }

    /// Reads consecutive uncached blocks straight from the device.
    pub fn read_uncached(&mut self, first: u32, buf: &mut [u8]) -> Result<()> {
        self.store.read_uncached(first, buf)
    }

    /// A metadata block (bitmap, inode table, directory, indirect) to change.
    pub fn block_mut(&mut self, block: u32) -> Result<&mut Block> {
        self.store.modify(block, BlockKind::Metadata)
    }

    /// A metadata block the caller fills whole: zeroed, not read first.
    pub fn block_overwrite(&mut self, block: u32) -> Result<&mut Block> {
        self.store.overwrite(block, BlockKind::Metadata)
    }

    /// A file-data block to change (not journaled; ordered before commit).
    pub fn data_block_mut(&mut self, block: u32) -> Result<&mut Block> {
        self.store.modify(block, BlockKind::Data)
    }

    /// A file-data block the caller fills whole: zeroed, not read first.
    pub fn data_block_overwrite(&mut self, block: u32) -> Result<&mut Block> {
        self.store.overwrite(block, BlockKind::Data)
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
    /// Returns the number of home blocks written. A failure part-way
    /// aborts the volume (read-only from then on): the device holds the
    /// last committed state, or this one once the journal is replayed.
    pub fn commit(&mut self, now: u32) -> Result<usize> {
        debug_assert!(self.operation.is_none(), "commits happen between operations");
        if self.is_read_only() {
            return Ok(0);
        }
        self.check_writable()?;
        let result = self.commit_running(now);
        if result.is_err() {
            self.store.abort();
        }
        result
    }

    fn commit_running(&mut self, now: u32) -> Result<usize> {
        for block in self.take_pending_frees() {
            self.set_block_bit(block, false)?;
            self.superblock.free_blocks += 1;
            self.superblock_dirty = true;
        }
        if self.superblock_dirty || self.store.cache().dirty_blocks() > 0 {
            self.superblock.write_time = now as u64;
            self.store_superblock()?;
        }
        let Some(journal) = self.journal.as_mut() else {
            return self.store.write_back_all();
        };
        let data = self.store.write_back_data()?;
        let metadata = self.store.dirty_metadata();
        if metadata.is_empty() {
            if data > 0 {
                self.store.flush()?;
            }
            return Ok(data);
        }
        // Operations reserve room before they start and roll back when
        // they outgrow it, so the transaction always fits: no metadata
        // ever goes home unlogged.
        if metadata.len() > journal.capacity() {
            return Err(Error::TooLargeForJournal);
        }
        self.store.flush()?;
        self.store.log_metadata(journal, &metadata)?;
        self.store.flush()?;
        let written = self.store.write_back()?;
        self.store.flush()?;
        // Durable with the next commit's first flush, before the journal
        // is written again.
        journal.mark_checkpointed(self.store.device_mut())?;
        self.store.shrink_to_budget();
        Ok(data + written)
    }

    /// Whether the running transaction should commit at the next operation
    /// boundary: the journal or the cache budget is half used by it.
    pub fn commit_due(&self) -> bool {
        if self.check_writable().is_err() {
            return false;
        }
        let cache = self.store.cache();
        match &self.journal {
            Some(journal) => {
                let logged = self.transaction_blocks();
                logged * 2 >= journal.capacity() || cache.overflow() > 0 || logged * 2 >= cache.capacity()
            }
            None => false,
        }
    }
}
