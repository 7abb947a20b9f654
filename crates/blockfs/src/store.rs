//! The block store: the device, the block cache and the read-only replay
//! overlay behind one door. Every block the filesystem reads or changes
//! passes through here, so bounds checks, the read-only rule and the
//! "aborted after a device error" rule live in one place. Everything
//! takes `&self`: the cache locks its shards, the rest never changes or
//! is atomic.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cache::{BlockCache, BlockCopies, CacheStats, Change, Changed, Prior};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::{Block, BLOCK_SIZE};

pub(crate) struct BlockStore<D> {
    /// Shared with a commit writing outside every lock.
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
    aborted: AtomicBool,
}

impl<D: BlockDevice> BlockStore<D> {
    pub fn new(device: D, cache: BlockCache, block_count: u32, read_only: bool) -> Self {
        BlockStore {
            device: Arc::new(device),
            cache,
            block_count,
            overlay: BTreeMap::new(),
            read_only,
            aborted: AtomicBool::new(false),
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

    /// The device for a commit's I/O outside the locks.
    pub fn shared_device(&self) -> Arc<D> {
        self.device.clone()
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// After a failed commit: refuse every later write.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
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
        if self.is_aborted() {
            Err(Error::Aborted)
        } else if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Runs `f` on the block's contents, read from the device on a miss.
    pub fn read<R>(&self, block: u32, f: impl FnOnce(&Block) -> R) -> Result<R> {
        self.check_block(block)?;
        if let Some(replayed) = self.overlay.get(&block) {
            return Ok(f(replayed));
        }
        Ok(self.cache.read(&*self.device, block, f)?)
    }

    /// Runs `f` on the block's contents if they are in memory; `None`
    /// when reading them would take the device.
    pub fn peek<R>(&self, block: u32, f: impl FnOnce(&Block) -> R) -> Result<Option<R>> {
        self.check_block(block)?;
        if let Some(replayed) = self.overlay.get(&block) {
            return Ok(Some(f(replayed)));
        }
        Ok(self.cache.peek(block, f))
    }

    /// See [`BlockCache::home_version`].
    pub fn home_version(&self) -> u64 {
        self.cache.home_version()
    }

    /// Caches `data`, read from the device without a lock while
    /// [`BlockStore::home_version`] was `version`.
    pub fn insert_clean(&self, block: u32, data: Box<Block>, version: u64) -> Result<()> {
        self.check_block(block)?;
        if !self.overlay.contains_key(&block) {
            self.cache.insert_clean(block, data, version);
        }
        Ok(())
    }

    /// Whether a block's current contents are in memory (and so must be
    /// read from there, not from the device).
    pub fn is_cached(&self, block: u32) -> bool {
        self.cache.is_cached(block) || self.overlay.contains_key(&block)
    }

    /// Reads consecutive blocks straight from the device, bypassing the
    /// cache; the caller has checked none of them is cached.
    pub fn read_uncached(&self, first: u32, buf: &mut [u8]) -> Result<()> {
        let count = (buf.len() / BLOCK_SIZE) as u32;
        self.check_block(first.saturating_add(count.saturating_sub(1)))?;
        Ok(self.device.read_blocks(first, buf)?)
    }

    fn writable(&self, block: u32) -> Result<()> {
        self.check_block(block)?;
        self.check_writable()
    }

    /// Changes a block (see [`BlockCache::modify`]); a miss with
    /// `Fill::Cached` is [`Error::NotCached`].
    pub fn modify<R>(
        &self,
        block: u32,
        change: Change,
        f: impl FnOnce(&mut Block) -> R,
    ) -> Result<(R, Changed)> {
        self.writable(block)?;
        self.cache.modify(&*self.device, block, change, f)?.ok_or(Error::NotCached(block))
    }

    /// Writes whole blocks that were just allocated straight to the
    /// device. A block allocated that late has no live cached copy (a
    /// freed block is not reused before its free is committed), so any
    /// slot left for it is stale and is dropped.
    pub fn write_fresh(&self, first: u32, data: &[u8]) -> Result<()> {
        let count = (data.len() / BLOCK_SIZE) as u32;
        self.writable(first + count - 1)?;
        for block in first..first + count {
            self.cache.drop_stale(block);
        }
        self.cache.note_home_write();
        Ok(self.device.write_blocks(first, data)?)
    }

    /// Drops a freed block's cached contents, returning its prior state
    /// when `snapshot`.
    pub fn discard(&self, block: u32, snapshot: bool) -> Option<Prior> {
        self.cache.discard(block, snapshot)
    }

    pub fn restore(&self, block: u32, prior: Prior) {
        self.cache.restore(block, prior);
    }

    /// Pins a block without changing it (see [`BlockCache::pin`]).
    pub fn pin(&self, block: u32) -> Result<()> {
        self.writable(block)?;
        Ok(self.cache.pin(&*self.device, block)?)
    }

    pub fn unpin(&self, block: u32) {
        self.cache.unpin(block);
    }

    /// Writes every dirty block that may go home, and flushes when
    /// `flush` (see [`BlockCache::write_back`]).
    pub fn write_back(&self, flush: bool) -> Result<usize> {
        let written = self.cache.write_back(&*self.device)?;
        if flush {
            self.device.flush()?;
        }
        Ok(written)
    }

    /// Hands the running transaction's dirty blocks to a commit (see
    /// `cache`): (file data, metadata), each in block order.
    pub fn freeze(&self) -> (BlockCopies, BlockCopies) {
        self.cache.freeze()
    }

    /// Keeps a cached block resident and away from write-back until the
    /// commit in flight lands (a block the commit changed only in its
    /// frozen copy).
    pub fn hold_in_flight(&self, block: u32) {
        self.cache.hold_in_flight(block);
    }

    /// Changes a cached block in place without dirtying it (see
    /// [`BlockCache::patch`]).
    pub fn patch(&self, block: u32, change: impl FnOnce(&mut Block)) {
        self.cache.patch(block, change);
    }

    /// The commit in flight is home: `blocks` are ordinary again.
    pub fn land(&self, blocks: impl Iterator<Item = u32>) {
        self.cache.land(blocks);
    }

    pub fn shrink_to_budget(&self) {
        self.cache.shrink_to_budget();
    }

    pub fn set_pin_metadata(&self, pin: bool) {
        self.cache.set_pin_metadata(pin);
    }
}
