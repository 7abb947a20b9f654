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
//!
//! The chain belongs to the orphan lock (`Volume::orphans`): an orphan's
//! `dtime` is written only under it, never by `Tx::write_inode`, so an
//! operation on one orphan and the unlinking of its neighbour from the
//! chain can run at once. Changes to the chain are undone by their
//! inverse (take off what was added, add back at the head what was taken
//! off), since others may have changed it meanwhile.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::cache::{BlockKind, Change, Fill};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::inode::{DTIME_OFFSET, INODE_SIZE};
use crate::format::le_u32;
use crate::tx::{Tx, Undo};
use crate::volume::{Orphans, Volume};

/// `ino`'s predecessor on the chain (`None`: it is the head), reading
/// each link with `next_of`.
fn predecessor(
    orphans: &Orphans,
    ino: u32,
    limit: u32,
    mut next_of: impl FnMut(u32) -> Result<u32>,
) -> Result<Option<u32>> {
    if orphans.head == ino {
        return Ok(None);
    }
    let mut previous = orphans.head;
    for _ in 0..=limit {
        if previous == 0 {
            break;
        }
        let next = next_of(previous)?;
        if next == ino {
            return Ok(Some(previous));
        }
        previous = next;
    }
    Err(Error::corrupt(Corruption::BadOrphanChain, Some(ino), None))
}

impl<D: BlockDevice> Volume<D> {
    pub fn is_orphan(&self, ino: u32) -> bool {
        // Most of the time there are none: no lock to take.
        self.orphan_count.0.load(Ordering::Relaxed) > 0 && self.orphans.lock().members.contains(&ino)
    }

    /// Keeps the lock-free count of orphans in step with the set.
    fn counted(&self, orphans: &Orphans) {
        self.orphan_count.0.store(orphans.members.len(), Ordering::Relaxed);
    }

    /// The orphans, in inode order.
    pub fn orphan_list(&self) -> Vec<u32> {
        self.orphans.lock().members.iter().copied().collect()
    }

    fn dtime_of(&self, ino: u32) -> Result<u32> {
        let (block, slot) = self.geometry.inode_location(ino);
        self.store().read(block, |bytes| le_u32(bytes, slot * INODE_SIZE + DTIME_OFFSET))
    }

    fn write_dtime(&self, ino: u32, dtime: u32) -> Result<()> {
        let (block, slot) = self.geometry.inode_location(ino);
        let at = slot * INODE_SIZE + DTIME_OFFSET;
        let change = Change { kind: BlockKind::Metadata, fill: Fill::Read, pin: false, snapshot: false };
        self.store()
            .modify(block, change, |bytes| bytes[at..at + 4].copy_from_slice(&dtime.to_le_bytes()))?;
        Ok(())
    }

    /// Takes `ino` off the chain, with no undo: the undo of its addition.
    /// A device error leaves the chain to the checker (the inode stays
    /// off the in-memory set).
    pub(crate) fn unchain_orphan(&self, ino: u32) {
        let mut orphans = self.orphans.lock();
        let removed = orphans.members.remove(&ino);
        self.counted(&orphans);
        if !removed || !self.has_extension() {
            return;
        }
        let limit = self.geometry.usable_inodes();
        let unlinked = self.dtime_of(ino).and_then(|next| {
            match predecessor(&orphans, ino, limit, |previous| self.dtime_of(previous))? {
                Some(previous) => self.write_dtime(previous, next),
                None => {
                    orphans.head = next;
                    Ok(())
                }
            }
        });
        if unlinked.is_ok() {
            self.note_head_changed();
        }
    }

    /// Puts `ino` back at the head of the chain, with no undo: the undo of
    /// its removal.
    pub(crate) fn chain_orphan(&self, ino: u32) {
        let mut orphans = self.orphans.lock();
        let added = orphans.members.insert(ino);
        self.counted(&orphans);
        if !added || !self.has_extension() {
            return;
        }
        if self.write_dtime(ino, orphans.head).is_ok() {
            orphans.head = ino;
            self.note_head_changed();
        }
    }

    /// Loads the on-disk chain into the in-memory set (mount). A chain
    /// that loops or leaves the inode table is damage.
    pub fn load_orphan_chain(&self) -> Result<()> {
        let mut orphans = self.orphans.lock();
        let mut seen = BTreeSet::new();
        let mut next = orphans.head;
        while next != 0 {
            if next >= self.geometry.usable_inodes() || !seen.insert(next) {
                return Err(Error::corrupt(Corruption::BadOrphanChain, Some(next), None));
            }
            next = self.dtime_of(next)?;
        }
        orphans.members.extend(seen);
        self.counted(&orphans);
        Ok(())
    }
}

impl<D: BlockDevice> Tx<'_, D> {
    fn dtime(&mut self, ino: u32) -> Result<u32> {
        let (block, slot) = self.geometry().inode_location(ino);
        self.read_block(block, |bytes| le_u32(bytes, slot * INODE_SIZE + DTIME_OFFSET))
    }

    fn pin_inode(&mut self, ino: u32) -> Result<()> {
        let (block, _) = self.geometry().inode_location(ino);
        self.pin_block(block)
    }

    /// Puts `ino` on the orphan chain (once), in memory and, when the
    /// image has an extension record, on disk.
    pub fn add_orphan(&mut self, ino: u32) -> Result<()> {
        let volume = self.volume;
        let mut orphans = volume.orphans.lock();
        if orphans.members.contains(&ino) {
            return Ok(());
        }
        if volume.has_extension() {
            self.pin_inode(ino)?;
            self.set_dtime(ino, orphans.head)?;
            orphans.head = ino;
            volume.note_head_changed();
        }
        orphans.members.insert(ino);
        volume.counted(&orphans);
        self.record(Undo::OrphanAdded(ino));
        Ok(())
    }

    /// Takes `ino` off the chain. Everything it reads comes first, so a
    /// miss or a device error leaves the chain as it was.
    pub fn remove_orphan(&mut self, ino: u32) -> Result<()> {
        let volume = self.volume;
        // Only the holder of `ino`'s lock puts it on the chain or takes it
        // off: with no orphans at all, there is nothing to look up.
        if volume.orphan_count.0.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut orphans = volume.orphans.lock();
        if !orphans.members.contains(&ino) {
            return Ok(());
        }
        if volume.has_extension() {
            self.pin_inode(ino)?;
            let next = self.dtime(ino)?;
            let limit = self.geometry().usable_inodes();
            let before = predecessor(&orphans, ino, limit, |previous| self.dtime(previous))?;
            match before {
                Some(previous) => {
                    self.pin_inode(previous)?;
                    self.set_dtime(previous, next)?;
                }
                None => {
                    orphans.head = next;
                    volume.note_head_changed();
                }
            }
            self.set_dtime(ino, 0)?;
        }
        orphans.members.remove(&ino);
        volume.counted(&orphans);
        self.record(Undo::OrphanRemoved(ino));
        Ok(())
    }
}
