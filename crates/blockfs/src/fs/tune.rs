//! Changing an existing image's features: adding a journal to a plain
//! version 1 image, or re-attaching the journal of an image whose extension
//! record an older driver wiped.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::allocator::InodeGoal;
use crate::cache::{BlockKind, Fill};
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::extension::{Extension, FEATURE_JOURNAL};
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::SYSTEM_INODE_FLAG;
use crate::format::Block;
use crate::journal::{journal_size_for, Journal};
use crate::tx::Tx;

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
        let volume = &self.volume;
        let mut tx = volume.begin_exclusive(now)?;
        tx.check_writable()?;
        if volume.has_journal() || volume.extension().is_some_and(|e| e.has_journal()) {
            return Err(Error::Exists);
        }
        let added = match detached_journal(&mut tx)? {
            Some((inode, first_block, blocks)) => JournalAdded::Reattached { inode, first_block, blocks },
            None => create_journal(&mut tx, now)?,
        };
        let (JournalAdded::Created { inode, first_block, blocks }
        | JournalAdded::Reattached { inode, first_block, blocks }) = added;
        let journal = Journal::create(volume.store().device(), first_block, blocks)?;
        tx.finish()?;
        volume.change_head(|head| {
            let extension = head.extension.get_or_insert_with(|| Extension::new(uuid, b"", now as u64));
            extension.compat_features |= FEATURE_JOURNAL;
            extension.journal_inode = inode;
            extension.journal_first_block = first_block;
            extension.journal_blocks = blocks;
        });
        volume.set_journal_inode(Some(inode));
        // Everything so far goes home unlogged; from now on, the journal.
        tx.commit_alone(now)?;
        drop(tx);
        volume.attach_journal(journal);
        Ok(added)
    }
}

/// The hidden journal left behind when an older driver wiped the extension
/// record: an inode flagged as a system inode, mapping one contiguous run
/// of a sensible length. Returns its inode, first block and length. Tuning
/// is offline, so a scan of the inode table is affordable here.
fn detached_journal<D: BlockDevice>(tx: &mut Tx<'_, D>) -> Result<Option<(u32, u32, u32)>> {
    for ino in 1..tx.geometry().usable_inodes() {
        let inode = tx.read_inode(ino)?;
        if inode.is_free() || inode.flags & SYSTEM_INODE_FLAG == 0 || inode.size % 4096 != 0 {
            continue;
        }
        let blocks = inode.size / 4096;
        let Some(first) = tx.map_block(ino, &inode, 0)? else { continue };
        let mut contiguous = blocks >= 3;
        for logical in 1..blocks {
            if !contiguous {
                break;
            }
            contiguous = tx.map_block(ino, &inode, logical as u64)? == Some(first + logical);
        }
        if contiguous {
            return Ok(Some((ino, first, blocks)));
        }
    }
    Ok(None)
}

fn create_journal<D: BlockDevice>(tx: &mut Tx<'_, D>, now: u32) -> Result<JournalAdded> {
    let blocks = journal_size_for(tx.geometry().block_count).ok_or(Error::NoSpace)?;
    let first = tx.allocate_run(blocks + journal_map_blocks(blocks))?;
    let mut map_blocks = Vec::new();
    let mut write = |block: u32, data: &Block| -> Result<()> {
        map_blocks.push((block, Box::new(*data)));
        Ok(())
    };
    let (inode, _) = journal_inode(first, blocks, now, &mut write)?;
    for (block, data) in map_blocks {
        tx.modify_block(block, BlockKind::Metadata, Fill::Whole, |bytes| bytes.copy_from_slice(&data[..]))?;
    }
    let ino = tx.allocate_inode(InodeGoal::Near(ROOT_INODE), &inode)?;
    Ok(JournalAdded::Created { inode: ino, first_block: first, blocks })
}
