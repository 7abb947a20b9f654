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

use super::format::{journal_inode, journal_map_blocks};
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
        volume.check_writable()?;
        if volume.journal.is_some() || volume.extension.is_some_and(|e| e.has_journal()) {
            return Err(Error::Exists);
        }
        let added = match detached_journal(volume)? {
            Some((inode, first_block, blocks)) => JournalAdded::Reattached { inode, first_block, blocks },
            None => create_journal(volume, now)?,
        };
        let (JournalAdded::Created { inode, first_block, blocks }
        | JournalAdded::Reattached { inode, first_block, blocks }) = added;
        let journal = Journal::create(volume.store().device(), first_block, blocks)?;
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

/// The hidden journal left behind when an older driver wiped the extension
/// record: an inode flagged as a system inode, mapping one contiguous run
/// of a sensible length. Returns its inode, first block and length. Tuning
/// is offline, so a scan of the inode table is affordable here.
fn detached_journal<D: BlockDevice>(volume: &mut Volume<D>) -> Result<Option<(u32, u32, u32)>> {
    for ino in 1..volume.geometry.usable_inodes() {
        let inode = volume.read_inode(ino)?;
        if inode.is_free() || inode.flags & SYSTEM_INODE_FLAG == 0 || inode.size % 4096 != 0 {
            continue;
        }
        let blocks = inode.size / 4096;
        let Some(first) = volume.map_block(ino, &inode, 0)? else { continue };
        let mut contiguous = blocks >= 3;
        for logical in 1..blocks {
            if !contiguous {
                break;
            }
            contiguous = volume.map_block(ino, &inode, logical as u64)? == Some(first + logical);
        }
        if contiguous {
            return Ok(Some((ino, first, blocks)));
        }
    }
    Ok(None)
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
