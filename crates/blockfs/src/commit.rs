//! A committing transaction, frozen: copies of the blocks it changed and
//! the journal they go through. [`Frozen::write`] does the commit's device
//! I/O and needs nothing else, so operations go on while it runs
//! (docs/DESIGN.md, "The commit"); the volume freezes it with the commit
//! barrier closed, and lands it after.
//!
//! The device sees exactly the order of the single-threaded commit:
//! file data home, flush, the journal transaction, flush, metadata home,
//! flush, the journal marked checkpointed (durable with the next flush).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::cache::BlockCopies;
use crate::device::{write_runs, BlockDevice};
use crate::error::{Error, Result};
use crate::format::Block;
use crate::journal::Journal;

pub(crate) struct Frozen {
    /// File data, in block order: home before the commit record.
    data: BlockCopies,
    /// Metadata, in block order: logged, then written home.
    metadata: BlockCopies,
    /// The journal as of the freeze, its sequence advanced by the write;
    /// `None` on an image without one (everything goes home at once).
    journal: Option<Journal>,
}

impl Frozen {
    pub fn new(data: BlockCopies, metadata: BlockCopies, journal: Option<Journal>) -> Self {
        Frozen { data, metadata, journal }
    }

    /// Every block the commit writes home.
    pub fn blocks(&self) -> impl Iterator<Item = u32> + '_ {
        self.data.iter().chain(&self.metadata).map(|(block, _)| *block)
    }

    /// The frozen copy of a metadata block, to change before the write.
    pub fn metadata_mut(&mut self, block: u32) -> Option<&mut Block> {
        let index = self.metadata.binary_search_by_key(&block, |(b, _)| *b).ok()?;
        Some(&mut self.metadata[index].1)
    }

    /// Adds a metadata block the running transaction did not change
    /// (kept in block order).
    pub fn add_metadata(&mut self, block: u32, contents: Box<Block>) {
        if let Err(index) = self.metadata.binary_search_by_key(&block, |(b, _)| *b) {
            self.metadata.insert(index, (block, contents));
        }
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// The commit's device I/O. Returns the number of home blocks
    /// written; on an error the device holds the last committed state, or
    /// this one once the journal is replayed.
    pub fn write<D: BlockDevice>(&mut self, device: &D) -> Result<usize> {
        let data: Vec<(u32, &Block)> = self.data.iter().map(|(block, copy)| (*block, &**copy)).collect();
        let metadata: Vec<(u32, &Block)> =
            self.metadata.iter().map(|(block, copy)| (*block, &**copy)).collect();
        let Some(journal) = self.journal.as_mut() else {
            let mut everything = [data, metadata].concat();
            everything.sort_unstable_by_key(|(block, _)| *block);
            write_runs(device, &everything)?;
            device.flush()?;
            return Ok(everything.len());
        };
        write_runs(device, &data)?;
        if metadata.is_empty() {
            if !data.is_empty() {
                device.flush()?;
            }
            return Ok(data.len());
        }
        // Operations reserve room before they start and roll back when
        // they outgrow it, so the transaction always fits: no metadata
        // ever goes home unlogged.
        if metadata.len() > journal.capacity() {
            return Err(Error::TooLargeForJournal);
        }
        device.flush()?;
        let targets: Vec<u32> = metadata.iter().map(|(block, _)| *block).collect();
        journal.write_transaction(device, &targets, |target| {
            let index = targets.binary_search(&target).ok()?;
            Some(*metadata[index].1)
        })?;
        device.flush()?;
        write_runs(device, &metadata)?;
        device.flush()?;
        // Durable with the next commit's first flush, before the journal
        // is written again.
        journal.mark_checkpointed(device)?;
        Ok(data.len() + metadata.len())
    }
}
