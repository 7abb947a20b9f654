//! The orphan chain: inodes whose blocks are still to be freed.
//!
//! Two kinds of inode wait on it. An inode whose last link is gone while
//! something still holds it (an open handle, or the kernel's reference
//! through a FUSE lookup) keeps its data until released; and a file being
//! truncated past what one transaction can free keeps its blocks past
//! `size` until the last step frees them. As ext3 does, both are chained
//! on disk so a crash loses neither: the extension record holds the first,
//! each inode's `dtime` the next (0 ends the chain; the root, inode 0, is
//! never an orphan). A read-write mount finishes whatever the chain holds:
//! an inode without links is freed, one with links is truncated to its
//! `size`. Plain version 1 images have no record: there the leak waits for
//! `fsck-blockfs`.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::inode::DiskInode;
use crate::volume::Volume;

impl<D: BlockDevice> Volume<D> {
    /// Puts `ino` on the orphan chain (once), in memory and, when the
    /// image has an extension record, on disk. `inode` is written by the
    /// caller.
    pub fn add_orphan(&mut self, ino: u32, inode: &mut DiskInode) {
        if self.is_orphan(ino) {
            return;
        }
        self.set_orphan(ino, true);
        if let Some(extension) = self.extension.as_mut() {
            inode.dtime = extension.orphan_head;
            extension.orphan_head = ino;
            self.superblock_dirty = true;
        }
    }

    /// Takes `ino` off the chain; `inode` (whose `dtime` is its link) is
    /// written by the caller.
    pub fn remove_orphan(&mut self, ino: u32, inode: &mut DiskInode) -> Result<()> {
        if !self.is_orphan(ino) {
            return Ok(());
        }
        self.set_orphan(ino, false);
        let next = core::mem::take(&mut inode.dtime);
        let Some(extension) = self.extension.as_mut() else { return Ok(()) };
        if extension.orphan_head == ino {
            extension.orphan_head = next;
            self.superblock_dirty = true;
            return Ok(());
        }
        let mut previous = extension.orphan_head;
        let mut steps = 0u32;
        while previous != 0 {
            let mut before = self.read_inode(previous)?;
            if before.dtime == ino {
                before.dtime = next;
                return self.write_inode(previous, &before);
            }
            steps += 1;
            if steps > self.geometry.usable_inodes() {
                break;
            }
            previous = before.dtime;
        }
        Err(Error::corrupt(Corruption::BadOrphanChain, Some(ino), None))
    }

    /// The on-disk orphan chain, in order. A chain that loops or leaves
    /// the inode table is damage.
    pub fn orphan_chain(&mut self) -> Result<Vec<u32>> {
        let mut chain = Vec::new();
        let mut seen = BTreeSet::new();
        let mut next = self.extension.map_or(0, |extension| extension.orphan_head);
        while next != 0 {
            if next >= self.geometry.usable_inodes() || !seen.insert(next) {
                return Err(Error::corrupt(Corruption::BadOrphanChain, Some(next), None));
            }
            let inode = self.read_inode(next)?;
            chain.push(next);
            next = inode.dtime;
        }
        Ok(chain)
    }
}
