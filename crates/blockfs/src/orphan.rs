//! Unlinked-but-open inodes.
//!
//! POSIX keeps an unlinked file's data while it is open. Such an inode has
//! `links_count == 0` on disk, yet its blocks stay allocated, so a crash
//! would leak them. As ext3 does, those inodes are chained on disk: the
//! extension record holds the first, each inode's `dtime` the next (0 ends
//! the chain; the root, inode 0, is never an orphan). A read-write mount
//! frees whatever the chain holds. Plain version 1 images have no record:
//! there the leak waits for `fsck-blockfs`.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::inode::DiskInode;
use crate::volume::Volume;

impl<D: BlockDevice> Volume<D> {
    /// Marks `ino` (just unlinked, still open) as an orphan, in memory and,
    /// when the image has an extension record, in the on-disk chain.
    /// `inode` is written by the caller.
    pub fn add_orphan(&mut self, ino: u32, inode: &mut DiskInode) {
        self.orphans.insert(ino);
        if let Some(extension) = self.extension.as_mut() {
            inode.dtime = extension.orphan_head;
            extension.orphan_head = ino;
            self.superblock_dirty = true;
        }
    }

    /// Takes `ino` out of the on-disk chain before it is freed.
    pub fn remove_orphan(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        self.orphans.remove(&ino);
        let Some(head) = self.extension.map(|extension| extension.orphan_head) else { return Ok(()) };
        if head == ino {
            if let Some(extension) = self.extension.as_mut() {
                extension.orphan_head = inode.dtime;
            }
            self.superblock_dirty = true;
            return Ok(());
        }
        let chain = self.orphan_chain()?;
        if let Some(position) = chain.iter().position(|&member| member == ino) {
            if position > 0 {
                let previous = chain[position - 1];
                let mut before = self.read_inode(previous)?;
                before.dtime = inode.dtime;
                self.write_inode(previous, &before)?;
            }
        }
        Ok(())
    }

    /// The on-disk orphan chain, in order. A chain that loops or names an
    /// inode in use is damage.
    pub fn orphan_chain(&mut self) -> Result<Vec<u32>> {
        let mut chain = Vec::new();
        let mut seen = BTreeSet::new();
        let mut next = self.extension.map_or(0, |extension| extension.orphan_head);
        while next != 0 {
            let inode = self.read_inode(next)?;
            if !inode.is_free() || !seen.insert(next) {
                return Err(Error::corrupt(Corruption::BadOrphanChain, Some(next), None));
            }
            chain.push(next);
            next = inode.dtime;
        }
        Ok(chain)
    }
}
