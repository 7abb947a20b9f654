//! The mounted image's shared state: the block store, the in-memory
//! superblock and geometry, allocation state, orphans and directory
//! indexes. Every other module reaches blocks and inodes through here.
//!
//! Operations are transactions (docs/DESIGN.md, "Transactions"): between
//! [`Volume::begin_operation`] and [`Volume::end_operation`] every change
//! is recorded — block prior states in the cache, in-memory state in an
//! [`OperationLog`] — so a failed operation rolls back to exactly where it
//! began, and only whole operations join the running journal transaction.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::{HashMap, HashSet};

use crate::cache::{BlockCache, BlockKind};
use crate::commit::Frozen;
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
use crate::sync::Mutex;

/// Metadata blocks the running transaction will log, against the
/// journal's capacity and the cache's budget, and the blocks the cache
/// holds past its budget.
struct TransactionSize {
    logged: usize,
    journal: usize,
    cache: usize,
    overflow: usize,
}

/// Blocks freed by the running transaction. Their bitmap bits clear at
/// commit, so no block is reused (and overwritten with new data) while a
/// crash could still bring back the old owner. Hashed, not ordered: every
/// freed block is looked up and inserted, and only the commit needs them
/// in order (`take`).
#[derive(Default)]
pub(crate) struct PendingFrees {
    blocks: HashSet<u32>,
    /// Pending frees per bitmap block: the bitmap blocks the commit will
    /// change, which count against the journal.
    per_bitmap_block: HashMap<u32, u32>,
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
        self.blocks.drain().collect()
    }

    fn bitmap_blocks(&self) -> usize {
        self.per_bitmap_block.len()
    }
}

fn encode_block0(superblock: &Superblock, extension: Option<&Extension>, block: &mut Block) {
    superblock.encode_block(block);
    if let Some(extension) = extension {
        extension.encode_block(block);
    }
}

/// A commit whose I/O may run without the filesystem lock.
struct InFlight {
    id: u64,
    /// The blocks it writes home: resident and held until it lands.
    blocks: Vec<u32>,
    /// The blocks it frees: free once it lands.
    frees: BTreeSet<u32>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

/// How a commit's I/O ended: the journal as it left it, or the error.
pub(crate) type Outcome = Result<Option<Journal>>;

/// A frozen commit handed to whoever writes it (see `commit`).
pub(crate) struct CommitTicket<D> {
    id: u64,
    frozen: Frozen,
    device: Arc<D>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

impl<D: BlockDevice> CommitTicket<D> {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the writer reports; it locks this before it lets go of the
    /// filesystem lock, so a thread landing the commit waits for it.
    pub fn outcome(&self) -> Arc<Mutex<Option<Outcome>>> {
        self.outcome.clone()
    }

    /// The commit's I/O; the outcome goes into `report`.
    pub fn write(&mut self, report: &mut Option<Outcome>) -> Result<usize> {
        let result = self.frozen.write(&*self.device);
        *report = Some(result.map(|_| self.frozen.journal().cloned()));
        result
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
    /// The commit whose I/O is running or has not landed yet.
    in_flight: Option<InFlight>,
    /// Commits frozen so far (names each one).
    commits: u64,
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
            in_flight: None,
            commits: 0,
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

    /// Writes whole file-data blocks just allocated straight to the
    /// device (see `data::write_data`).
    pub fn write_fresh(&mut self, first: u32, data: &[u8]) -> Result<()> {
        self.store.write_fresh(first, data)
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
        let (superblock, extension) = (self.superblock, self.extension);
        encode_block0(&superblock, extension.as_ref(), self.block_mut(0)?);
        self.superblock_dirty = false;
        Ok(())
    }

    /// Makes every change durable: with a journal, as one transaction
    /// (see `journal`); without, by writing every dirty block and flushing.
    /// Writes only dirty blocks, plus block 0 when anything changed.
    /// Returns the number of home blocks written. A failure part-way
    /// aborts the volume (read-only from then on): the device holds the
    /// last committed state, or this one once the journal is replayed.
    ///
    /// This runs the whole commit under the caller's lock; `FileSystem`
    /// releases its lock for the I/O (`freeze_commit`, then
    /// `CommitTicket::write`, then `land_commit`).
    pub fn commit(&mut self, now: u32) -> Result<usize> {
        debug_assert!(self.operation.is_none(), "commits happen between operations");
        let Some(mut ticket) = self.freeze_commit(now)? else { return Ok(0) };
        let outcome = ticket.outcome();
        let mut report = outcome.lock();
        let result = ticket.write(&mut report);
        drop(report);
        self.land_commit(ticket.id())?;
        result
    }

    /// Takes the running transaction for a commit, after landing the one
    /// before it (waiting for its I/O if it is still running). Returns
    /// `None` when there is nothing to commit or nothing may be written.
    ///
    /// The blocks the transaction freed are free in the frozen bitmap and
    /// superblock copies only: the live bitmap keeps them allocated until
    /// the commit lands, so nothing reuses (and overwrites) a block that a
    /// crash before then would give back to its old owner.
    pub fn freeze_commit(&mut self, now: u32) -> Result<Option<CommitTicket<D>>> {
        self.land_in_flight()?;
        if self.is_read_only() {
            return Ok(None);
        }
        self.check_writable()?;
        if !self.has_changes() {
            return Ok(None);
        }
        let frees = self.take_pending_frees();
        self.superblock.write_time = now as u64;
        let frozen = self.store_superblock().and_then(|()| {
            let (data, metadata) = self.store.freeze();
            let mut frozen = Frozen::new(data, metadata, self.journal.clone());
            self.free_in_frozen(&mut frozen, &frees)?;
            Ok(frozen)
        });
        let frozen = match frozen {
            Ok(frozen) => frozen,
            Err(error) => {
                // The cache has handed its dirty blocks over: there is no
                // way back to a running transaction.
                self.store.abort();
                return Err(error);
            }
        };
        self.commits += 1;
        let outcome = Arc::new(Mutex::new(None));
        self.in_flight = Some(InFlight {
            id: self.commits,
            blocks: frozen.blocks().collect(),
            frees,
            outcome: outcome.clone(),
        });
        Ok(Some(CommitTicket { id: self.commits, frozen, device: self.store.shared_device(), outcome }))
    }

    /// Clears the bits of `frees` in the frozen bitmap and counts them in
    /// the frozen superblock.
    fn free_in_frozen(&mut self, frozen: &mut Frozen, frees: &BTreeSet<u32>) -> Result<()> {
        if frees.is_empty() {
            return Ok(());
        }
        for &block in frees {
            let (bitmap_block, bit) = self.geometry.bitmap_location(block);
            if frozen.metadata_mut(bitmap_block).is_none() {
                let copy = Box::new(*self.store.block(bitmap_block)?);
                self.store.hold_in_flight(bitmap_block);
                frozen.add_metadata(bitmap_block, copy);
            }
            let bytes = frozen.metadata_mut(bitmap_block).expect("added above");
            bytes[(bit / 8) as usize] &= !(1u8 << (bit % 8));
        }
        let mut superblock = self.superblock;
        superblock.free_blocks += frees.len() as u32;
        let block0 = frozen.metadata_mut(0).expect("block 0 is stored at every commit");
        encode_block0(&superblock, self.extension.as_ref(), block0);
        Ok(())
    }

    /// Lands the commit in flight, if there is one, waiting for its I/O:
    /// its blocks become ordinary cache blocks and its frees free. After
    /// a failed commit the volume is aborted and this returns the error.
    pub fn land_in_flight(&mut self) -> Result<()> {
        let Some(in_flight) = self.in_flight.take() else { return Ok(()) };
        // Blocks until the writer reports (it holds the lock meanwhile).
        let outcome = in_flight.outcome.lock().take();
        let journal = match outcome {
            Some(Ok(journal)) => journal,
            Some(Err(error)) => {
                self.store.abort();
                return Err(error);
            }
            // The writer stopped without a word (it panicked).
            None => {
                self.store.abort();
                return Err(Error::Aborted);
            }
        };
        self.journal = journal;
        for &block in &in_flight.frees {
            let (bitmap_block, bit) = self.geometry.bitmap_location(block);
            self.store.patch(bitmap_block, |bytes| bytes[(bit / 8) as usize] &= !(1u8 << (bit % 8)));
        }
        self.superblock.free_blocks += in_flight.frees.len() as u32;
        if !self.superblock_dirty {
            // Block 0 on the device now says this; so does the cache.
            let (superblock, extension) = (self.superblock, self.extension);
            self.store.patch(0, |block| encode_block0(&superblock, extension.as_ref(), block));
        }
        self.store.land(in_flight.blocks.into_iter());
        self.store.shrink_to_budget();
        Ok(())
    }

    /// Lands commit `id` if nobody has yet.
    pub fn land_commit(&mut self, id: u64) -> Result<()> {
        match &self.in_flight {
            Some(in_flight) if in_flight.id == id => self.land_in_flight(),
            _ => Ok(()),
        }
    }

    /// Blocks freed but not yet free: by the running transaction, and by
    /// the commit in flight.
    pub fn frees_awaiting_commit(&self) -> usize {
        self.pending_frees.len() + self.in_flight.as_ref().map_or(0, |in_flight| in_flight.frees.len())
    }

    /// The running transaction against what bounds it, or `None` when
    /// nothing needs it committed early (a plain or unwritable image).
    fn transaction_size(&self) -> Option<TransactionSize> {
        let journal = self.journal.as_ref().filter(|_| self.check_writable().is_ok())?;
        let cache = self.store.cache();
        Some(TransactionSize {
            logged: self.transaction_blocks(),
            journal: journal.capacity(),
            cache: cache.capacity(),
            overflow: cache.overflow(),
        })
    }

    /// Whether the running transaction should commit at the next operation
    /// boundary: the journal or the cache budget is half used by it.
    pub fn commit_due(&self) -> bool {
        self.transaction_size().is_some_and(|size| {
            size.logged * 2 >= size.journal || size.overflow > 0 || size.logged * 2 >= size.cache
        })
    }

    /// Whether the running transaction must commit at the next operation
    /// boundary even when a helper thread was asked to commit it: it holds
    /// three quarters of the journal, or pins three quarters of the cache
    /// budget, or half again the budget is in use.
    pub fn commit_urgent(&self) -> bool {
        self.transaction_size().is_some_and(|size| {
            size.logged * 4 >= size.journal * 3
                || size.logged * 4 >= size.cache * 3
                || size.overflow * 2 >= size.cache
        })
    }
}
