//! Changing an existing image's features: adding a journal to a plain
//! version 1 image, or re-attaching the journal of an image whose extension
//! record an older driver wiped.

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::extension::{Extension, FEATURE_JOURNAL};
use crate::format::inode::SYSTEM_INODE_FLAG;
use crate::format::Block;
use crate::journal::{journal_size_for, Journal};
use crate::volume::Volume;

use super::format::{journal_inode, journal_map_blocks, JOURNAL_INODE};
use super::FileSystem;

/// What [`FileSystem::add_journal`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalAdded {
    /// A new journal inode and block run.
    Created { inode: u32, first_block: u32, blocks: u32 },
    /// The hidden journal inode was still there; the record points at it again.
    Reattached { inode: u32, first_block: u32, blocks: u32 },
}

impl<D: BlockDevice> FileSystem<D> {
    /// Gives a journal to an image mounted read-write without one. The
    /// image must then be unmounted (or synced) for the change to stick;
    /// later operations on this handle are journaled.
    pub fn add_journal(&self, uuid: [u8; 16]) -> Result<JournalAdded> {
        let now = (self.options.clock)();
        let mut state = self.state.lock();
        let volume = &mut state.volume;
        if volume.read_only {
            return Err(Error::ReadOnly);
        }
        if volume.journal.is_some() || volume.extension.is_some_and(|e| e.has_journal()) {
            return Err(Error::Exists);
        }
        let added = match detached_journal(volume)? {
            Some((first_block, blocks)) => {
                JournalAdded::Reattached { inode: JOURNAL_INODE, first_block, blocks }
            }
            None => create_journal(volume, now)?,
        };
        let (JournalAdded::Created { inode, first_block, blocks }
        | JournalAdded::Reattached { inode, first_block, blocks }) = added;
        let journal = Journal::create(&mut volume.device, first_block, blocks)?;
        let extension = volume.extension.get_or_insert_with(|| Extension::new(uuid, b"", now as u64));
        extension.compat_features |= FEATURE_JOURNAL;
        extension.journal_inode = inode;
        extension.journal_first_block = first_block;
        extension.journal_blocks = blocks;
        volume.journal_inode = Some(inode);
        volume.superblock_dirty = true;
        // Everything so far goes home unlogged; from now on, the journal.
        volume.commit(now)?;
        volume.attach_journal(journal);
        Ok(added)
    }
}

/// The run of a hidden journal inode left behind when an older driver wiped
/// the extension record: inode 1 flagged as a system inode, mapping one
/// contiguous run of a sensible length.
fn detached_journal<D: BlockDevice>(volume: &mut Volume<D>) -> Result<Option<(u32, u32)>> {
    if JOURNAL_INODE >= volume.geometry.usable_inodes() {
        return Ok(None);
    }
    let inode = volume.read_inode(JOURNAL_INODE)?;
    if inode.is_free() || inode.flags & SYSTEM_INODE_FLAG == 0 || inode.size % 4096 != 0 {
        return Ok(None);
    }
    let blocks = inode.size / 4096;
    if blocks < 3 {
        return Ok(None);
    }
    let Some(first) = volume.map_block(JOURNAL_INODE, &inode, 0)? else { return Ok(None) };
    for logical in 1..blocks {
        if volume.map_block(JOURNAL_INODE, &inode, logical as u64)? != Some(first + logical) {
            return Ok(None);
        }
    }
    Ok(Some((first, blocks)))
}

fn create_journal<D: BlockDevice>(volume: &mut Volume<D>, now: u32) -> Result<JournalAdded> {
    let blocks = journal_size_for(volume.geometry.block_count).ok_or(Error::NoSpace)?;
    let first = volume.allocate_run(blocks + journal_map_blocks(blocks))?;
    let ino = volume.allocate_inode()?;
    let mut write = |block: u32, data: &Block| -> Result<()> {
        volume.block_overwrite(block)?.copy_from_slice(data);
        Ok(())
    };
    let (inode, _) = journal_inode(first, blocks, now, &mut write)?;
    volume.write_inode(ino, &inode)?;
    Ok(JournalAdded::Created { inode: ino, first_block: first, blocks })
}
