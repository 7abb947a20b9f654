//! The block store: the device, the block cache and the read-only replay
//! overlay behind one door. Every block the filesystem reads or changes
//! passes through here, so bounds checks, the read-only rule and the
//! "aborted after a device error" rule live in one place.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use crate::cache::{BlockCache, BlockCopies, BlockKind, CacheStats};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::{Block, BLOCK_SIZE};

pub(crate) struct BlockStore<D> {
    /// Shared with a commit writing without the filesystem lock.
    device: Arc<D>,
    cache: BlockCache,
    /// Blocks of the image (the device may be longer).
    block_count: u32,
    /// Read-only mount of an image with a committed but unreplayed
    /// transaction: its blocks, consulted before the device.
    overlay: BTreeMap<u32, Box<Block>>,
    read_only: bool,
    /// A commit failed part-way: nothing more may be written (the image
    /// on the device is the last committed state, or will be once the
    /// journal is replayed).
    aborted: bool,
    /// A miss fails with [`Error::NotCached`] instead of reading the
    /// device (see `FileSystem::run_then`).
    defer_misses: bool,
    /// Writes and commits that changed or may change blocks at their home
    /// location, other than the cache's own write-backs (which it counts):
    /// see [`BlockStore::home_version`].
    home_changes: u64,
}

impl<D: BlockDevice> BlockStore<D> {
    pub fn new(device: D, cache: BlockCache, block_count: u32, read_only: bool) -> Self {
        BlockStore {
            device: Arc::new(device),
            cache,
            block_count,
            overlay: BTreeMap::new(),
            read_only,
            aborted: false,
            defer_misses: false,
            home_changes: 0,
        }
    }

    pub fn set_overlay(&mut self, overlay: BTreeMap<u32, Box<Block>>) {
        self.overlay = overlay;
    }

    /// The device back; no commit may be in flight.
    pub fn into_device(self) -> D {
        Arc::into_inner(self.device).expect("no commit holds the device after the last one landed")
    }

    /// The device, for writes that bypass the cache (a new journal's
    /// blocks, which no cached block shadows).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device for a commit's I/O outside the lock.
    pub fn shared_device(&self) -> Arc<D> {
        self.device.clone()
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// After a failed commit: refuse every later write.
    pub fn abort(&mut self) {
        self.aborted = true;
    }

    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn check_block(&self, block: u32) -> Result<()> {
        if block < self.block_count {
            Ok(())
        } else {
            Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)))
        }
    }

    /// Whether writes are allowed at all.
    pub fn check_writable(&self) -> Result<()> {
        if self.aborted {
            Err(Error::Aborted)
        } else if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub fn block(&mut self, block: u32) -> Result<&Block> {
        self.check_block(block)?;
        if let Some(replayed) = self.overlay.get(&block) {
            return Ok(replayed);
        }
        self.check_cached(block)?;
        Ok(self.cache.read(&*self.device, block)?)
    }

    /// While misses are deferred, fails for a block the cache lacks.
    fn check_cached(&self, block: u32) -> Result<()> {
        if self.defer_misses && !self.cache.is_cached(block) {
            Err(Error::NotCached(block))
        } else {
            Ok(())
        }
    }

    /// From now on, a block read or changed that is not in memory fails
    /// with [`Error::NotCached`] (`true`), or is read from the device
    /// (`false`, the default).
    pub fn set_defer_misses(&mut self, defer: bool) {
        self.defer_misses = defer;
    }

    /// A number that changes whenever a block not in the cache may have
    /// changed on the device: a write home, a write-back, a commit frozen
    /// or landed. A block read from the device with the lock let go is
    /// current if this number is the same before and after the read; a
    /// block the cache lacks is only ever written home by one of these
    /// (a commit writes home only blocks it keeps resident until it lands,
    /// and a freed block is reused only after its commit landed).
    pub fn home_version(&self) -> u64 {
        self.home_changes + self.cache.stats().blocks_written
    }

    /// Caches `data`, read from the device without the lock while
    /// [`BlockStore::home_version`] stayed the same.
    pub fn insert_clean(&mut self, block: u32, data: Box<Block>) -> Result<()> {
        self.check_block(block)?;
        if self.overlay.contains_key(&block) {
            return Ok(());
        }
        Ok(self.cache.insert_clean(&*self.device, block, data)?)
    }

    /// Whether a block's current contents are in memory (and so must be
    /// read from there, not from the device).
    pub fn is_cached(&self, block: u32) -> bool {
        self.cache.is_cached(block) || self.overlay.contains_key(&block)
    }

    /// Reads consecutive blocks straight from the device, bypassing the
    /// cache; the caller has checked none of them is cached.
    pub fn read_uncached(&mut self, first: u32, buf: &mut [u8]) -> Result<()> {
        let count = (buf.len() / BLOCK_SIZE) as u32;
        self.check_block(first.saturating_add(count.saturating_sub(1)))?;
        Ok(self.device.read_blocks(first, buf)?)
    }

    fn writable(&self, block: u32) -> Result<()> {
        self.check_block(block)?;
        self.check_writable()
    }

    /// A block to change; `kind` says whether the journal logs it.
    pub fn modify(&mut self, block: u32, kind: BlockKind) -> Result<&mut Block> {
        self.writable(block)?;
        self.check_cached(block)?;
        Ok(self.cache.modify(&*self.device, block, kind)?)
    }

    /// A block the caller fills whole: zeroed, not read first.
    pub fn overwrite(&mut self, block: u32, kind: BlockKind) -> Result<&mut Block> {
        self.writable(block)?;
        Ok(self.cache.overwrite(&*self.device, block, kind)?)
    }

    /// Writes whole blocks that were just allocated straight to the
    /// device. A block allocated that late has no live cached copy (a
    /// freed block is not reused before its free is committed), so any
    /// slot left for it is stale and is dropped.
    pub fn write_fresh(&mut self, first: u32, data: &[u8]) -> Result<()> {
        let count = (data.len() / BLOCK_SIZE) as u32;
        self.writable(first + count - 1)?;
        for block in first..first + count {
            self.cache.drop_stale(block);
        }
        self.home_changes += 1;
        Ok(self.device.write_blocks(first, data)?)
    }

    /// Drops a freed block's cached contents (undoably).
    pub fn discard(&mut self, block: u32) {
        self.cache.discard(block);
    }

    /// Starts an operation: the first change to each block records its
    /// prior state (see `cache`).
    pub fn begin(&mut self) {
        self.cache.begin();
    }

    pub fn keep(&mut self) {
        self.cache.keep();
    }

    pub fn rollback(&mut self) {
        self.cache.rollback();
    }

    /// Writes every dirty block home and flushes (a plain image's commit).
    pub fn write_back_all(&mut self) -> Result<usize> {
        self.home_changes += 1;
        let written = self.cache.write_back(&*self.device)?;
        self.device.flush()?;
        Ok(written)
    }

    /// Hands the running transaction's dirty blocks to a commit (see
    /// `cache`): (file data, metadata), each in block order.
    pub fn freeze(&mut self) -> (BlockCopies, BlockCopies) {
        self.home_changes += 1;
        self.cache.freeze()
    }

    /// Keeps a cached block resident and away from write-back until the
    /// commit in flight lands (a block the commit changed only in its
    /// frozen copy).
    pub fn hold_in_flight(&mut self, block: u32) {
        self.cache.hold_in_flight(block);
    }

    /// Changes a cached block in place without dirtying it: the device
    /// already holds the result (a landed commit's frees).
    pub fn patch(&mut self, block: u32, change: impl FnOnce(&mut Block)) {
        self.cache.patch(block, change);
    }

    /// The commit in flight is home: `blocks` are ordinary again.
    pub fn land(&mut self, blocks: impl Iterator<Item = u32>) {
        self.home_changes += 1;
        self.cache.land(blocks);
    }

    pub fn shrink_to_budget(&mut self) {
        self.cache.shrink_to_budget();
    }

    pub fn set_pin_metadata(&mut self, pin: bool) {
        self.cache.set_pin_metadata(pin);
    }
}
