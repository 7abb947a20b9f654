//! The metadata journal (ordered mode, as ext3/ext4's JBD2).
//!
//! Power-loss story: metadata changes reach their home blocks only after
//! the transaction holding them is durable in the journal; file data
//! reaches its home blocks, and is flushed, before that commit. A commit is
//!
//! 1. write dirty file data home, flush;
//! 2. write descriptors + copies of every dirty metadata block + a commit
//!    record whose CRC-32 covers them all, flush — now durable;
//! 3. write the metadata home, flush;
//! 4. advance the journal superblock's sequence (made durable by the next
//!    commit's first flush, which precedes any reuse of the journal).
//!
//! A crash before 2's flush leaves the previous state (the commit record is
//! missing or fails its CRC); after it, mount replays the copies, which is
//! idempotent, so a crash during replay is recovered by replaying again.
//! Only one transaction is ever in the journal, always at journal block 1.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::crc::{crc32_append, crc32c_append};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::journal::{
    Commit, Descriptor, JournalSuperblock, JOURNAL_VERSION, JOURNAL_VERSION_CRC32C_BODY,
    TARGETS_PER_DESCRIPTOR,
};
use crate::format::{Block, BLOCK_SIZE};

/// Smallest and largest journals `journal_size_for` picks. A filesystem
/// journal smaller than that is not one of ours (it could not hold an
/// operation's changes): mount refuses it and the checker detaches it.
/// (A resize's redo log, read with the same records, may be smaller.)
pub const MIN_JOURNAL_BLOCKS: u32 = 64;
pub const MAX_JOURNAL_BLOCKS: u32 = 8192;
/// Copies written to the device per request while logging.
const LOG_RUN: usize = 64;

/// Journal size for an image: 1/64 of it, between 256 KiB and 32 MiB;
/// `None` when the image is too small to spare that (less than 8 journals).
pub fn journal_size_for(block_count: u32) -> Option<u32> {
    let size = (block_count / 64).clamp(MIN_JOURNAL_BLOCKS, MAX_JOURNAL_BLOCKS);
    (size as u64 * 8 <= block_count as u64).then_some(size)
}

fn descriptors_for(logged: usize) -> usize {
    logged.div_ceil(TARGETS_PER_DESCRIPTOR).max(1)
}

/// A committed transaction found in the journal, verified but not applied.
pub(crate) struct Pending {
    pub targets: Vec<u32>,
    /// Journal-relative block of the first copy.
    first_copy: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Journal {
    /// Physical block of the journal superblock; the run follows it.
    pub first_block: u32,
    pub block_count: u32,
    /// Sequence of the next transaction to commit.
    pub sequence: u64,
    /// The on-disk version, which says how a transaction's body is summed.
    version: u32,
}

impl Journal {
    /// Writes an empty journal (superblock, and a zeroed block 1 so a
    /// stale transaction from an earlier use of the disk is never replayed).
    pub fn create<D: BlockDevice>(device: &D, first_block: u32, block_count: u32) -> Result<Journal> {
        let journal = Journal { first_block, block_count, sequence: 1, version: JOURNAL_VERSION };
        device.write_block(first_block + 1, &[0u8; BLOCK_SIZE])?;
        journal.write_superblock(device)?;
        Ok(journal)
    }

    pub fn open<D: BlockDevice>(device: &D, first_block: u32, block_count: u32) -> Result<Journal> {
        let corrupt = || Error::corrupt(Corruption::BadJournal, None, Some(first_block));
        if block_count < 3
            || first_block.checked_add(block_count).is_none_or(|end| end > device.block_count())
        {
            return Err(corrupt());
        }
        let mut block = [0u8; BLOCK_SIZE];
        device.read_block(first_block, &mut block)?;
        let superblock = JournalSuperblock::decode(&block).map_err(|_| corrupt())?;
        if superblock.block_count != block_count {
            return Err(corrupt());
        }
        Ok(Journal { first_block, block_count, sequence: superblock.sequence, version: superblock.version })
    }

    fn write_superblock<D: BlockDevice>(&self, device: &D) -> Result<()> {
        let superblock = JournalSuperblock {
            version: self.version,
            block_count: self.block_count,
            sequence: self.sequence,
        };
        device.write_block(self.first_block, &superblock.encode())?;
        Ok(())
    }

    /// Brings an older journal to the current version before anything is
    /// logged in it (nothing may be pending: replay first). Not flushed.
    pub fn upgrade<D: BlockDevice>(&mut self, device: &D) -> Result<()> {
        if self.version != JOURNAL_VERSION {
            self.version = JOURNAL_VERSION;
            self.write_superblock(device)?;
        }
        Ok(())
    }

    /// Continues the checksum of a transaction's body (see `crc`).
    fn sum(&self, crc: u32, block: &[u8]) -> u32 {
        if self.version == JOURNAL_VERSION_CRC32C_BODY {
            crc32c_append(crc, block)
        } else {
            crc32_append(crc, block)
        }
    }

    /// Whether `block` lies inside the journal's run.
    pub fn contains(&self, block: u32) -> bool {
        block >= self.first_block && block - self.first_block < self.block_count
    }

    /// Most metadata blocks one transaction can log.
    pub fn capacity(&self) -> usize {
        // Superblock and commit record aside, each descriptor maps
        // TARGETS_PER_DESCRIPTOR copies.
        let room = self.block_count as usize - 2;
        room - room.div_ceil(TARGETS_PER_DESCRIPTOR + 1)
    }

    fn read<D: BlockDevice>(&self, device: &D, index: u32, block: &mut Block) -> Result<()> {
        device.read_block(self.first_block + index, block)?;
        Ok(())
    }

    /// Logs `blocks` (home number, contents) as one transaction. The caller
    /// flushes afterwards; the transaction is durable once that returns.
    pub fn write_transaction<D: BlockDevice>(
        &mut self,
        device: &D,
        targets: &[u32],
        contents: impl Fn(u32) -> Option<Block>,
    ) -> Result<()> {
        debug_assert!(targets.len() <= self.capacity());
        debug_assert_eq!(self.version, JOURNAL_VERSION, "upgrade before logging");
        let total = targets.len() as u32;
        let mut crc = 0;
        let mut position = 1;
        for chunk in targets.chunks(TARGETS_PER_DESCRIPTOR) {
            let descriptor = Descriptor { sequence: self.sequence, total, targets: chunk.to_vec() };
            let block = descriptor.encode();
            crc = self.sum(crc, &block);
            device.write_block(self.first_block + position, &block)?;
            position += 1;
        }
        let mut run: Vec<u8> = Vec::with_capacity(LOG_RUN * BLOCK_SIZE);
        for chunk in targets.chunks(LOG_RUN) {
            run.clear();
            for &target in chunk {
                let block =
                    contents(target).ok_or(Error::Io(crate::error::DeviceError::eio(Some(target))))?;
                crc = self.sum(crc, &block);
                run.extend_from_slice(&block);
            }
            device.write_blocks(self.first_block + position, &run)?;
            position += chunk.len() as u32;
        }
        let commit = Commit { sequence: self.sequence, total, body_crc: crc };
        device.write_block(self.first_block + position, &commit.encode())?;
        Ok(())
    }

    /// Records that the last transaction is home: replay will skip it.
    pub fn mark_checkpointed<D: BlockDevice>(&mut self, device: &D) -> Result<()> {
        self.sequence += 1;
        self.write_superblock(device)
    }

    /// The committed transaction awaiting replay, if the journal holds one
    /// whose every descriptor, copy and commit record checks out.
    pub fn pending<D: BlockDevice>(&self, device: &D, image_blocks: u32) -> Result<Option<Pending>> {
        let mut block = [0u8; BLOCK_SIZE];
        self.read(device, 1, &mut block)?;
        let Ok(first) = Descriptor::decode(&block) else {
            return Ok(None);
        };
        let total = first.total as usize;
        if first.sequence != self.sequence || total > self.capacity() {
            return Ok(None);
        }
        let descriptor_count = descriptors_for(total);
        let mut crc = self.sum(0, &block);
        let mut targets = first.targets;
        for index in 1..descriptor_count {
            self.read(device, 1 + index as u32, &mut block)?;
            let Ok(next) = Descriptor::decode(&block) else {
                return Ok(None);
            };
            if next.sequence != self.sequence || next.total as usize != total {
                return Ok(None);
            }
            crc = self.sum(crc, &block);
            targets.extend_from_slice(&next.targets);
        }
        if targets.len() != total {
            return Ok(None);
        }
        let first_copy = 1 + descriptor_count as u32;
        for index in 0..total as u32 {
            self.read(device, first_copy + index, &mut block)?;
            crc = self.sum(crc, &block);
        }
        self.read(device, first_copy + total as u32, &mut block)?;
        let Ok(commit) = Commit::decode(&block) else {
            return Ok(None);
        };
        if commit.sequence != self.sequence || commit.total as usize != total || commit.body_crc != crc {
            return Ok(None);
        }
        // A committed transaction naming blocks outside the image or inside
        // the journal was not written by us: refuse rather than scribble.
        if let Some(&bad) = targets.iter().find(|&&t| t >= image_blocks || self.contains(t)) {
            return Err(Error::corrupt(Corruption::BadJournal, None, Some(bad)));
        }
        Ok(Some(Pending { targets, first_copy }))
    }

    /// Writes a pending transaction home and retires it.
    pub fn replay<D: BlockDevice>(&mut self, device: &D, pending: &Pending) -> Result<()> {
        let mut block = [0u8; BLOCK_SIZE];
        for (index, &target) in pending.targets.iter().enumerate() {
            self.read(device, pending.first_copy + index as u32, &mut block)?;
            device.write_block(target, &block)?;
        }
        device.flush()?;
        self.mark_checkpointed(device)?;
        device.flush()?;
        Ok(())
    }

    /// A pending transaction's copies, for a read-only mount that must see
    /// the committed state without writing it home.
    pub fn load<D: BlockDevice>(&self, device: &D, pending: &Pending) -> Result<BTreeMap<u32, Box<Block>>> {
        let mut overlay = BTreeMap::new();
        for (index, &target) in pending.targets.iter().enumerate() {
            let mut block = Box::new([0u8; BLOCK_SIZE]);
            self.read(device, pending.first_copy + index as u32, &mut block)?;
            overlay.insert(target, block);
        }
        Ok(overlay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    fn filled(byte: u8) -> Block {
        [byte; BLOCK_SIZE]
    }

    #[test]
    fn sizes() {
        assert_eq!(journal_size_for(256), None);
        assert_eq!(journal_size_for(1024), Some(64));
        assert_eq!(journal_size_for(65536), Some(1024));
        assert_eq!(journal_size_for(u32::MAX), Some(8192));
    }

    #[test]
    fn committed_transaction_replays_once() {
        let mut device = MemDevice::new(200);
        let mut journal = Journal::create(&device, 100, 64).unwrap();
        let targets = [3u32, 7, 9];
        journal.write_transaction(&device, &targets, |t| Some(filled(t as u8))).unwrap();
        let mut reopened = Journal::open(&device, 100, 64).unwrap();
        let pending = reopened.pending(&device, 200).unwrap().expect("committed");
        assert_eq!(pending.targets, targets);
        reopened.replay(&device, &pending).unwrap();
        for target in targets {
            assert_eq!(device.as_bytes()[target as usize * BLOCK_SIZE], target as u8);
        }
        let again = Journal::open(&device, 100, 64).unwrap();
        assert!(again.pending(&device, 200).unwrap().is_none());
    }

    #[test]
    fn torn_transactions_are_ignored() {
        let device = MemDevice::new(200);
        let mut journal = Journal::create(&device, 100, 64).unwrap();
        journal.write_transaction(&device, &[3, 4], |_| Some(filled(1))).unwrap();
        // Damage one logged copy: the commit CRC no longer matches.
        let copy = (100 + 2) * BLOCK_SIZE;
        let mut bytes = device.into_bytes();
        bytes[copy + 17] ^= 0xff;
        let device = MemDevice::from_bytes(bytes);
        let journal = Journal::open(&device, 100, 64).unwrap();
        assert!(journal.pending(&device, 200).unwrap().is_none());
    }

    #[test]
    fn large_transactions_use_several_descriptors() {
        let device = MemDevice::new(4000);
        let mut journal = Journal::create(&device, 1500, 2500).unwrap();
        let targets: Vec<u32> = (0..1500).collect();
        assert!(journal.capacity() >= targets.len());
        journal.write_transaction(&device, &targets, |t| Some(filled((t % 251) as u8))).unwrap();
        let pending = journal.pending(&device, 4000).unwrap().unwrap();
        assert_eq!(pending.targets, targets);
        let overlay = journal.load(&device, &pending).unwrap();
        assert_eq!(overlay[&1499][0], (1499 % 251) as u8);
    }

    #[test]
    fn capacity_fits_the_journal() {
        for blocks in [3u32, 64, 1019, 1020, 1021, 2040, 8192] {
            let journal =
                Journal { first_block: 0, block_count: blocks, sequence: 1, version: JOURNAL_VERSION };
            let logged = journal.capacity();
            assert!(2 + descriptors_for(logged) + logged <= blocks as usize, "{blocks}");
            assert!(2 + descriptors_for(logged + 1) + logged + 1 > blocks as usize, "{blocks}");
        }
    }
}
